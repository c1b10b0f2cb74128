"""The search space: every sampled point is a buildable config, the seed's recipe is in it."""

from __future__ import annotations

import optuna
import pytest

from fer_core.config import TrainConfig
from fer_core.model import check_fits
from search.tuning.space import INPUT_SHAPE, define_space, seed_point, to_config


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
    # and leaves out what it says it does (search.tuning.space's docstring gives the evidence)
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


def test_in_rounds_every_point_trains_the_round_and_the_rest_is_unchanged() -> None:
    """A large data set's search (:func:`search.settings.round_images`) varies the same settings; its
    configs only count their epochs in rounds."""
    from search.settings import LARGE_DATA, ROUND_IMAGES, is_large, round_images

    assert round_images(630) == 0 and round_images(2 * ROUND_IMAGES) == ROUND_IMAGES
    assert round_images(LARGE_DATA - 1) == 0 and not is_large(LARGE_DATA - 1) and is_large(LARGE_DATA)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    plain = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial, twin = study.ask(), plain.ask()
        rounds = to_config({**trial.params, **define_space(trial, max_epochs=57, round_images=ROUND_IMAGES)})
        passes = to_config({**twin.params, **define_space(twin, max_epochs=57)})
        assert rounds.round_images == ROUND_IMAGES and passes.round_images == 0
        assert rounds.images_per_epoch(28709) == ROUND_IMAGES and passes.images_per_epoch(28709) == 28709
        assert TrainConfig.from_dict({**rounds.to_dict(), "round_images": 0}) == passes
        study.tell(trial, 0.0)
        plain.tell(twin, 0.0)


def test_a_large_data_set_searches_what_the_small_space_leaves_out() -> None:
    """Depth 4, the global-average-pooling head, residual and separable blocks, batches of 128 and
    the cosine schedule are
    searched from :data:`search.settings.LARGE_DATA` training faces on; the seed's recipe stays the
    first point."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=2))
    points = []
    for _ in range(300):
        trial = study.ask()
        constants = define_space(trial, max_epochs=57, round_images=8192, large=True)
        points.append({**trial.params, **constants})
        study.tell(trial, 0.0)
    for point in points:
        config = to_config(point)
        check_fits(config, INPUT_SHAPE)
        assert ("phase1_share" in point) == (config.schedule == "two_phase")
    assert {p["head"] for p in points} == {"flatten", "gap"} and {p["schedule"] for p in points} == {"two_phase",
                                                                                                      "cosine"}
    assert {p["batch_size"] for p in points} == {16, 32, 64, 128} and {p["conv_blocks"] for p in points} == {2, 3, 4}
    # residual blocks, plain or Xception's depthwise-separable ones; separable only where residual
    assert {(p["residual"], p.get("separable")) for p in points} == {(False, None), (True, False), (True, True)}
    seeded = optuna.create_study()
    seeded.enqueue_trial(seed_point(large=True))
    trial = seeded.ask()
    constants = define_space(trial, max_epochs=20, large=True)
    assert to_config({**trial.params, **constants}) == TrainConfig(l2=1e-6, normalize="standardize")
