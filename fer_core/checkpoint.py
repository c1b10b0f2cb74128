"""A training's state on disk, so that an interrupted training goes on where it stopped.

``fer_core.train.fit(checkpoint=FOLDER)`` leaves in FOLDER the network (with its optimizer's state),
the epochs' history and the epochs its schedule runs over (fitted to a deadline, if it had one),
every :data:`CHECKPOINT_PERIOD_S` seconds and when training ends; given a folder that holds the
state of the same config's training, it goes on from there, and a finished one trains no more.
The state file is written last, atomically, and names the network's file it goes with, so a
training killed while saving leaves the previous state whole.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from fer_core.config import TrainConfig
from fer_core.staging import write_atomic

CHECKPOINT_PERIOD_S = 30.0  # an interrupted training redoes at most this much; saving costs ~0.1-0.3 s
CHECKPOINT_PERIOD_ENV = "FER_TUNE_CHECKPOINT_S"  # overrides it in a process (tests checkpoint every epoch)
STATE_FILE = "state.json"


@dataclass(frozen=True)
class Saved:
    """A training's last state: its network's file, its history so far and its schedule's epochs."""

    model_path: Path
    history: list[dict]
    epochs: int

    @property
    def finished(self) -> bool:
        return len(self.history) >= self.epochs


def checkpoint_period_s() -> float:
    """Seconds between two saves: :data:`CHECKPOINT_PERIOD_S`, or :data:`CHECKPOINT_PERIOD_ENV`'s value."""
    return float(os.environ.get(CHECKPOINT_PERIOD_ENV, CHECKPOINT_PERIOD_S))


def read_checkpoint(folder: str | os.PathLike, config: TrainConfig) -> Optional[Saved]:
    """The state ``folder`` holds of ``config``'s training; None when it holds none, or another
    config's (a stale folder is trained over, not resumed)."""
    folder = Path(folder)
    try:
        state = json.loads((folder / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or state.get("config") != config.to_dict():
        return None
    model_path = folder / str(state.get("model", ""))
    if not model_path.is_file() or not isinstance(state.get("history"), list):
        return None
    return Saved(model_path, state["history"], int(state["epochs"]))


def save_checkpoint(folder: str | os.PathLike, config: TrainConfig, model, history: list[dict], epochs: int) -> None:
    """Save ``model`` and its training's state in ``folder``: the network first, then the state
    that names it (atomically), then the older networks go."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"model-{len(history)}.keras"
    model.save(folder / name)
    state = {"config": config.to_dict(), "model": name, "history": list(history), "epochs": int(epochs)}
    write_atomic(folder / STATE_FILE, json.dumps(state))
    for old in folder.glob("model-*.keras"):
        if old.name != name:
            old.unlink(missing_ok=True)


class CheckpointSaver:
    """A Keras callback that saves the training's state (:func:`save_checkpoint`) every
    ``period_s`` seconds, with ``plan["config"].epochs`` as the schedule's epochs, and when training
    ends, as finished; ``history`` holds the epochs so far. Built lazily, so this module imports no Keras."""

    def __new__(cls, folder, config: TrainConfig, plan: dict, history: list[dict], period_s: float):
        import keras

        class Saver(keras.callbacks.Callback):
            saved = (len(history), None)  # (epochs held, schedule's epochs) of the last save
            last = time.monotonic()

            def save(self, epochs: int):
                save_checkpoint(folder, config, self.model, history, epochs)
                self.saved, self.last = (len(history), epochs), time.monotonic()

            def on_epoch_end(self, epoch, logs=None):
                if time.monotonic() - self.last >= period_s:
                    self.save(plan["config"].epochs)

            def on_train_end(self, logs=None):
                # reached only when training ended (its epochs, or stopped early), not when it raised:
                # the state then says finished
                if self.saved != (len(history), len(history)):
                    self.save(len(history))

        return Saver()
