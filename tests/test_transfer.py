"""Fine-tuning a trained model (--init): its weights with a new head, blocks held still, the
transferred layers' rate, the fine-tuning space, and the second step of the README's recipe."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import search_run
from fer_core.config import TrainConfig
from fer_core.errors import ConfigError

TINY = TrainConfig(conv_blocks=2, base_filters=8, dense_units=16, normalize="standardize", epochs=1,
                   rotation=0.0, shift=0.0, shear=0.0, zoom=0.0, flip=False)


@pytest.fixture(scope="module")
def pretrained_dir(tmp_path_factory) -> Path:
    """A model as a run exports it: an ensemble wrapper around the trained network, and its card."""
    from fer_core.export import export_model
    from fer_core.model import build_predictor
    from fer_core.synthetic import make_faces
    from fer_core.train import fit

    data = make_faces(120, seed=0)
    model, _ = fit(TINY, data, threads=1)
    folder = tmp_path_factory.mktemp("pre") / "best"
    export_model(build_predictor([model], mirror=True), folder, data.class_names, TINY.to_dict(),
                 metrics={"test_accuracy": 0.5}, data_fingerprint=data.fingerprint(),
                 extra={"trained_on": "synthetic:120", "ensemble": [{"trial_id": "t", "config": TINY.to_dict()}]})
    return folder


@pytest.fixture(scope="module")
def pretrained(pretrained_dir: Path):
    from fer_core.transfer import load_pretrained

    return load_pretrained(pretrained_dir)


def test_the_new_network_has_the_pretrained_weights_and_a_head_for_its_own_classes(pretrained) -> None:
    from fer_core.transfer import build_finetuned, finetuning_config

    assert sorted(pretrained.weights) == ["block1_conv1", "block2_conv1", "dense"]
    model = build_finetuned(finetuning_config(pretrained, learning_rate=0.01), pretrained, (48, 48, 1), n_classes=4)
    assert model.output_shape == (None, 4)
    for name, weights in pretrained.weights.items():
        assert all(np.array_equal(a, b) for a, b in zip(model.get_layer(name).get_weights(), weights))
    # the architecture is the pretrained one, whatever the sampled values said
    assert finetuning_config(pretrained, conv_blocks=3, dense_units=64).conv_blocks == 2
    with pytest.raises(ConfigError, match="differs from the pretrained network in dense_units=64"):
        build_finetuned(TrainConfig.from_dict({**TINY.to_dict(), "dense_units": 64}), pretrained, (48, 48, 1), 4)


def test_init_takes_the_model_file_as_well_as_its_folder(pretrained_dir: Path, pretrained) -> None:
    from fer_core.transfer import load_pretrained

    by_file = load_pretrained(pretrained_dir / "model.keras")
    assert by_file.config == pretrained.config and by_file.card == pretrained.card
    assert all(np.array_equal(a, b) for name in pretrained.weights
               for a, b in zip(by_file.weights[name], pretrained.weights[name]))


def _weights_each_epoch(config: TrainConfig, pretrained, names: list[str]) -> list[dict[str, np.ndarray]]:
    import keras

    from fer_core.synthetic import make_faces
    from fer_core.train import fit

    seen = []

    class Snapshot(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append({n: self.model.get_layer(n).get_weights()[0].copy() for n in names})

    fit(config, make_faces(100, seed=3), threads=1, init=pretrained, callbacks=[Snapshot()])
    return seen


def test_frozen_blocks_hold_still_for_their_share_of_the_epochs_then_learn(pretrained) -> None:
    from fer_core.transfer import finetuning_config

    config = finetuning_config(pretrained, epochs=2, frozen_blocks=1, frozen_share=0.5, learning_rate=0.01)
    first, second = _weights_each_epoch(config, pretrained, ["block1_conv1", "block2_conv1"])
    start = {n: pretrained.weights[n][0] for n in ("block1_conv1", "block2_conv1")}
    assert np.array_equal(first["block1_conv1"], start["block1_conv1"])  # held still in epoch 1
    assert not np.allclose(first["block2_conv1"], start["block2_conv1"])  # the next block learns from the start
    assert not np.allclose(second["block1_conv1"], start["block1_conv1"])  # and block 1 from epoch 2


def test_the_transferred_layers_learn_at_their_share_of_the_heads_rate(pretrained) -> None:
    from fer_core.transfer import finetuning_config

    still = finetuning_config(pretrained, epochs=1, backbone_lr_share=0.0, learning_rate=0.01)
    [after] = _weights_each_epoch(still, pretrained, ["block1_conv1", "dense", "probabilities"])
    assert np.array_equal(after["block1_conv1"], pretrained.weights["block1_conv1"][0])
    assert np.array_equal(after["dense"], pretrained.weights["dense"][0])
    slow = finetuning_config(pretrained, epochs=1, backbone_lr_share=0.1, learning_rate=0.01)
    full = finetuning_config(pretrained, epochs=1, backbone_lr_share=1.0, learning_rate=0.01)
    moved = [np.abs(_weights_each_epoch(c, pretrained, ["dense"])[0]["dense"] - pretrained.weights["dense"][0]).max()
             for c in (slow, full)]
    assert 0 < moved[0] < 0.5 * moved[1]


def test_a_checkpointed_fine_tuning_resumes_with_its_optimizer(pretrained, tmp_path: Path) -> None:
    from fer_core.synthetic import make_faces
    from fer_core.train import fit
    from fer_core.transfer import finetuning_config

    data = make_faces(100, seed=3)
    config = finetuning_config(pretrained, epochs=2, frozen_blocks=2, frozen_share=1.0, learning_rate=0.01)
    model, history = fit(config, data, threads=1, init=pretrained)
    model.save(tmp_path / "mid.keras")
    resumed, history = fit(TrainConfig.from_dict({**config.to_dict(), "epochs": 3}), data, threads=1,
                           init=pretrained, resume=(tmp_path / "mid.keras", history[:1]))
    assert type(resumed.optimizer).__name__ == "FineTuneAdam" and resumed.optimizer.frozen_steps > 0
    assert [row["epoch"] for row in history] == [1, 2, 3]


def test_the_fine_tuning_space_keeps_the_architecture_and_searches_how_to_fine_tune(pretrained) -> None:
    import optuna

    from search.tuning.space import define_space, seed_point

    architecture = pretrained.architecture()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        constants = define_space(trial, max_epochs=8, architecture=architecture)
        config = TrainConfig.from_dict({k: v for k, v in {**trial.params, **constants}.items() if k != "augment"})
        assert {k: getattr(config, k) for k in architecture} == architecture
        assert 0 <= config.frozen_blocks <= 2 and 0.01 <= config.backbone_lr_share <= 1 and 2 <= config.epochs <= 8
        study.tell(trial, 0.5)
    searched = set().union(*(t.params for t in study.trials))
    assert {"frozen_blocks", "frozen_share", "backbone_lr_share", "epochs", "learning_rate", "rotation"} <= searched
    assert not searched & {"conv_blocks", "base_filters", "dense_units", "batch_norm"}
    first = seed_point(architecture, max_epochs=8)
    assert first["frozen_blocks"] == 0 and first["backbone_lr_share"] == 1.0 and first["learning_rate"] == 1e-3
    assert first["epochs"] == 8
    assert "conv_blocks" in seed_point()  # the from-scratch space searches the architecture


@pytest.mark.slow
def test_the_readmes_second_step_fine_tunes_a_runs_model_on_other_faces(pretrained_dir: Path, tmp_path: Path) -> None:
    """The README's second step, ``search.run --init runs/NAME/best`` on another set of faces, from a
    model exported as a run exports it (that a run exports one: test_run's end-to-end test)."""
    result = search_run("--data", "synthetic:300:1", "--init", str(pretrained_dir), "--trials", "2",
                        "--max-epochs", "2", "--confirm", "0", "--ensemble", "1", "--final-epochs-scale", "1",
                        "--output", str(tmp_path), "--name", "small")
    assert result.returncode == 0, result.stderr[-3000:]
    first = json.loads((pretrained_dir / "model_card.json").read_text())
    report = json.loads((tmp_path / "small" / "report.json").read_text())
    card = json.loads((tmp_path / "small" / "best" / "model_card.json").read_text())
    for said in (report["initialized_from"], card["initialized_from"]):
        assert said["source"] == str(pretrained_dir.resolve())
        assert said["data_fingerprint"] == first["data_fingerprint"] != card["data_fingerprint"]
        assert said["metrics"]["test_accuracy"] == first["metrics"]["test_accuracy"]
    architecture = {k: first["config"][k] for k in report["initialized_from"]["architecture"]}
    assert architecture["conv_blocks"] == TINY.conv_blocks and architecture["base_filters"] == TINY.base_filters
    for trial in report["trials"]:
        assert {k: trial["config"][k] for k in architecture} == architecture
    assert report["seed_recipe_test_accuracy"] is not None  # the seed's recipe, from scratch, beside it
    assert "Fine-tuned from" in (tmp_path / "small" / "report.md").read_text()


@pytest.mark.parametrize("card, expected", [
    ("{", "model_card.json: cannot read the model card (JSONDecodeError); expected JSON"),
    ('{"config": {}}', "model_card.json: class_names is None; expected a list of at least two class names"),
    ('{"class_names": ["a", "b"]}', "model_card.json has no usable network config ('config'); expected the card"),
])
def test_a_bad_init_card_is_one_config_error_naming_init_and_the_card(tmp_path: Path, card: str,
                                                                      expected: str) -> None:
    from fer_core.transfer import read_init_card

    (tmp_path / "model.keras").write_bytes(b"")
    (tmp_path / "model_card.json").write_text(card)
    with pytest.raises(ConfigError) as error:
        read_init_card(tmp_path)
    assert str(error.value).startswith(f"--init {tmp_path}: {tmp_path}") and expected in str(error.value)


@pytest.mark.parametrize("own_epochs, ran, status", [(6, 6, "completed"), (6, 3, "stopped_early"),
                                                     (None, 6, "stopped_early"), (None, 16, "completed")])
def test_a_trial_that_ran_its_own_fewer_epochs_is_complete(tmp_path: Path, own_epochs, ran, status) -> None:
    """The fine-tuning space searches the epochs: a 6-epoch trial that ran 6 of the 16 allowed
    finished, and the ranking prefers finished trials."""
    from types import SimpleNamespace

    from search.tuning.trials import trial_record

    (tmp_path / "result.json").write_text("\n".join(json.dumps({"epoch": e, "val_accuracy": 0.5})
                                                    for e in range(1, ran + 1)))
    config = {"learning_rate": 0.001} | ({"epochs": own_epochs} if own_epochs else {})
    trial = SimpleNamespace(trial_id="t", status="TERMINATED", config=config, local_path=str(tmp_path), path=None,
                            last_result={"training_iteration": ran, "val_accuracy": 0.5})
    assert trial_record(trial, "val_accuracy", max_epochs=16).status == status
