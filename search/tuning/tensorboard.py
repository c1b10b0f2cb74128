"""TensorBoard for a search: per-trial curves and the HParams dashboard.

The search writes its event files from the driver, out of the results Tune already
streams back, so trials on remote nodes need no shared file system to be seen:
``tensorboard --logdir DIR/NAME/tensorboard`` shows one run per trial (every reported
metric by epoch, plus its hyperparameters for the HParams dashboard); the final model's run
is :mod:`search.report.final_run`'s.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ray.tune import Callback

from fer_core.runtime import configure_tensorflow
from search.report.final_run import SCALARS

HPARAM_METRICS = ("val_accuracy", "val_macro_f1", "val_loss")


def write_hparams_config(logdir: Path, hparam_names: Iterable[str]) -> None:
    """Declare the experiment's hyperparameters and metrics for the HParams dashboard."""
    tf = configure_tensorflow()
    from tensorboard.plugins.hparams import api as hp

    with tf.summary.create_file_writer(str(logdir)).as_default():
        hp.hparams_config(hparams=[hp.HParam(name) for name in sorted(set(hparam_names))],
                          metrics=[hp.Metric(tag, display_name=tag) for tag in HPARAM_METRICS])


class TensorBoardCallback(Callback):
    """A Tune callback that writes each trial's hyperparameters and per-epoch metrics.

    Writers are opened lazily and dropped on pickling, so the callback survives Tune's
    experiment checkpoints and a ``--resume``.
    """

    def __init__(self, logdir: str | Path) -> None:
        self.logdir = Path(logdir)
        self._writers: dict[str, Any] = {}

    def __getstate__(self) -> dict:
        return {"logdir": self.logdir, "_writers": {}}

    def _writer(self, trial) -> Any:
        tf = configure_tensorflow()

        if trial.trial_id not in self._writers:
            self._writers[trial.trial_id] = tf.summary.create_file_writer(str(self.logdir / f"trial_{trial.trial_id}"))
        return self._writers[trial.trial_id]

    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        from tensorboard.plugins.hparams import api as hp

        with self._writer(trial).as_default():
            hp.hparams(hparam_values(trial.config), trial_id=trial.trial_id)

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        tf = configure_tensorflow()

        step = int(result.get("training_iteration", result.get("epoch", 0)))
        writer = self._writer(trial)
        with writer.as_default():
            for tag in SCALARS:
                value = result.get(tag)
                if isinstance(value, (int, float)) and math.isfinite(value):
                    tf.summary.scalar(tag, value, step=step)
        writer.flush()

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self._close(trial)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._close(trial)

    def _close(self, trial) -> None:
        writer = self._writers.pop(trial.trial_id, None)
        if writer is not None:
            writer.close()


def hparam_values(config: Mapping[str, Any]) -> dict[str, Any]:
    """Config values as TensorBoard accepts them (bool, int, float, str)."""
    return {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in config.items()}
