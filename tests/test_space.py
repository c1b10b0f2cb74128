"""The search space: every sampled point is a buildable config, the seed's recipe is in it."""

from __future__ import annotations

import optuna
import pytest

from fer_core.config import TrainConfig
from fer_core.model import check_fits
from search.space import INPUT_SHAPE, define_space, seed_point, to_config


def _sample(n: int, seed: int = 0) -> list[dict]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    points = []
    for _ in range(n):
        trial = study.ask()
        constants = define_space(trial, max_epochs=12)
        points.append({**trial.params, **constants})
        study.tell(trial, 0.0)
    return points


def test_every_sampled_point_is_a_buildable_config() -> None:
    points = _sample(300)
    for point in points:
        config = to_config(point)
        check_fits(config, INPUT_SHAPE)  # raises if the network could not be built
        assert config.epochs == 12
    # the space really varies what it claims to
    for field in ("conv_blocks", "batch_norm", "class_weight", "padding", "batch_size", "erasing"):
        assert len({p[field] for p in points}) > 1, field
    # and leaves out what it says it does (search.space's docstring gives the evidence)
    assert {p["head"] for p in points} == {"flatten"} and {p["schedule"] for p in points} == {"two_phase"}
    assert {p["normalize"] for p in points} == {"standardize"}
    assert {p["batch_size"] for p in points} == {16, 32, 64} and {p["conv_blocks"] for p in points} == {2, 3}
    assert {p["dense_units"] for p in points} == {128, 256, 512}


def test_augmentation_switch_turns_every_magnitude_off() -> None:
    off = [to_config(p) for p in _sample(100, seed=1) if not p["augment"]]
    assert off and all(not config.augments for config in off)


def test_seed_point_is_the_seed_recipe() -> None:
    config = to_config({**seed_point(), "epochs": TrainConfig().epochs})
    assert config == TrainConfig(l2=1e-6)  # the recipe's own input (raw pixels) where the point is used alone


def test_seed_point_is_enqueued_verbatim_on_standardized_faces() -> None:
    study = optuna.create_study()
    study.enqueue_trial(seed_point())
    trial = study.ask()
    constants = define_space(trial, max_epochs=20)
    assert to_config({**trial.params, **constants}) == TrainConfig(l2=1e-6, normalize="standardize")


@pytest.mark.parametrize("blocks, convs, kernel, padding", [(3, 2, 5, "same"), (3, 2, 3, "valid"), (2, 2, 5, "valid")])
def test_valid_padding_that_cannot_fit_becomes_same(blocks: int, convs: int, kernel: int, padding: str) -> None:
    trial = optuna.trial.FixedTrial({**seed_point(), "conv_blocks": blocks, "convs_per_block": convs,
                                     "kernel_size": kernel, "padding": "valid"})
    constants = define_space(trial, max_epochs=5)
    assert constants.get("padding", "valid") == padding

