"""A training's saved state (:mod:`fer_core.checkpoint`): real trainings interrupted, then continued
from the folder they left, over the epochs their schedule was fitted to."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fer_core.checkpoint import CHECKPOINT_PERIOD_ENV, STATE_FILE, read_checkpoint
from fer_core.config import TrainConfig
from fer_core.synthetic import make_faces
from fer_core.train import fit, learning_rate_at

SMALL = dict(conv_blocks=2, base_filters=8, dense_units=32, padding="same", batch_size=32)


class Interrupted(Exception):
    """What a killed process leaves: training stopped between two epochs, nothing more saved."""


def _interrupt_before(epoch: int):
    import keras

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_begin(self, index, logs=None):
            if index + 1 == epoch:
                raise Interrupted

    return Interrupt()


@pytest.fixture(scope="module")
def train():
    return make_faces(300, seed=0)


def test_an_interrupted_training_goes_on_from_its_state_and_a_finished_one_trains_no_more(
        train, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CHECKPOINT_PERIOD_ENV, "0")  # a state every epoch
    config = TrainConfig(**SMALL, epochs=5, phase1_share=0.6)
    folder = tmp_path / "member"
    with pytest.raises(Interrupted):
        fit(config, train, threads=1, checkpoint=folder, callbacks=[_interrupt_before(3)])
    saved = read_checkpoint(folder, config)
    assert saved is not None and len(saved.history) == 2 and saved.epochs == 5 and not saved.finished
    assert [p.name for p in folder.glob("model-*.keras")] == ["model-2.keras"]  # older states removed

    model, history = fit(config, train, threads=1, checkpoint=folder)
    assert [row["epoch"] for row in history] == [1, 2, 3, 4, 5]
    assert json.dumps(history[:2]) == json.dumps(saved.history)  # those two epochs were not trained again
    # the schedule went on where it was: the lowered rate for the last two epochs
    assert [row["learning_rate"] for row in history] == pytest.approx([learning_rate_at(config, e) for e in range(5)])
    assert read_checkpoint(folder, config).finished

    again, same = fit(config, train, threads=1, checkpoint=folder)
    assert json.dumps(same) == json.dumps(history)  # rows hold NaN (no validation), equal only as text
    assert all(np.array_equal(a, b) for a, b in zip(again.get_weights(), model.get_weights()))

    # another config's training does not take this state: it trains from its first epoch, and its own state replaces it
    other = TrainConfig(**{**SMALL, "seed": 1}, epochs=2)
    assert read_checkpoint(folder, other) is None
    _, fresh = fit(other, train, threads=1, checkpoint=folder)
    assert len(fresh) == 2 and fresh[0]["train_loss"] != history[0]["train_loss"]
    assert json.loads((folder / STATE_FILE).read_text())["config"] == other.to_dict()
    assert read_checkpoint(folder, config) is None


@pytest.mark.slow
def test_a_training_fitted_to_a_deadline_goes_on_over_the_epochs_it_was_fitted_to(
        train, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its schedule's epochs are part of the state: resumed with more time, it still ends there."""
    monkeypatch.setenv(CHECKPOINT_PERIOD_ENV, "0")
    config = TrainConfig(**SMALL, epochs=500, phase1_share=0.5)
    folder = tmp_path / "member"
    # 20 s: its first epochs (graph building included) on a busy machine must leave room for 3 (8 s did not)
    with pytest.raises(Interrupted):
        fit(config, train, threads=1, seconds=20, checkpoint=folder, callbacks=[_interrupt_before(3)])
    saved = read_checkpoint(folder, config)
    assert saved is not None and len(saved.history) == 2 and 3 <= saved.epochs < 500

    _, history = fit(config, train, threads=1, seconds=600, checkpoint=folder)
    assert len(history) == saved.epochs and json.dumps(history[:2]) == json.dumps(saved.history)
    rates = [row["learning_rate"] for row in history]
    assert rates[-1] == pytest.approx(config.learning_rate * config.phase2_factor)  # its fitted schedule's end
