"""The Ray Tune trainable: one trial is ``fer_core.train.fit`` reporting every epoch.

A plain function of its config, as Ray's examples write them. The data set arrives
through the object store (``tune.with_parameters``), so a trial never reads files; the
test split is not part of it. TensorFlow's threads are pinned to the CPUs the trial is
given, so concurrent trials on one machine do not fight over cores. Every
:data:`fer_core.checkpoint.CHECKPOINT_PERIOD_S` seconds the trial leaves a checkpoint in the run's storage,
so that a trial whose node is lost, or whose driver was killed, continues from its last
checkpoint on any node instead of starting again.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from fer_core.checkpoint import checkpoint_period_s
from fer_core.dataset import Dataset
from fer_core.export import KERAS_FILE
from fer_core.runtime import configure_tensorflow
from fer_core.train import fit
from fer_core.transfer import Pretrained
from search.tuning.space import to_config

HISTORY_FILE = "history.json"


@dataclass(frozen=True)
class SearchData:
    """What every trial trains and validates on: the train part and its validation carve, and the
    pretrained network trials fine-tune, if any."""

    train: Dataset
    val: Dataset
    init: Optional[Pretrained] = None


def train_trial(params: dict[str, Any], data: SearchData, threads: Optional[int] = None) -> None:
    """Train the config in ``params`` and report each epoch to Tune.

    Reported per epoch: ``val_accuracy``, ``val_macro_f1``, ``val_loss``, ``train_loss``,
    ``train_accuracy``, ``learning_rate``, ``epoch``, the seconds spent training and
    validating, the Ray ``node_id`` the trial runs on, ``tf_threads``, TensorFlow's
    intra-op threads there, and after a restore ``restored_from_epoch``, the epochs its
    checkpoint held. An exception (a config that
    diverges, say) propagates, and Tune records the trial as failed with its reason.
    """
    import ray
    from ray import tune

    # before Keras imports TensorFlow: pins the threads, keeps the start-up chatter out
    configure_tensorflow(threads)
    logging.getLogger("ray.train").setLevel(logging.WARNING)  # a line per checkpoint in the driver's log otherwise
    import keras

    config = to_config(params)
    period_s = checkpoint_period_s()  # on a node (the lost-node test checkpoints every epoch)
    # Ray's own node_ip is the machine's address; the node id tells nodes of one machine apart
    node_id = ray.get_runtime_context().get_node_id()
    placement = {"node_id": node_id}
    latest: dict[str, Any] = {}

    class TuneReporter(keras.callbacks.Callback):
        """Reports the epoch fit just scored, with a checkpoint when one is due."""

        last_saved = time.monotonic()

        def on_epoch_end(self, epoch, logs=None):
            if "tf_threads" not in placement:  # TensorFlow is loaded by now; record what fit pinned
                import tensorflow as tf

                placement["tf_threads"] = tf.config.threading.get_intra_op_parallelism_threads()
            metrics = {**latest["report"], **placement}
            due = time.monotonic() - self.last_saved >= period_s and epoch + 1 < config.epochs
            if not due:
                tune.report(metrics)
                return
            with tempfile.TemporaryDirectory() as folder:
                self.model.save(Path(folder) / KERAS_FILE)
                (Path(folder) / HISTORY_FILE).write_text(json.dumps(latest["history"]))
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
            self.last_saved = time.monotonic()

    history: list[dict] = []

    def remember(report) -> None:
        history.append(report.to_dict())
        latest.update(report=report.to_dict(), history=list(history))

    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        fit(config, data.train, data.val, callbacks=[TuneReporter()], on_epoch=remember, threads=threads,
            init=data.init)
        return
    with checkpoint.as_directory() as folder:
        history.extend(json.loads((Path(folder) / HISTORY_FILE).read_text()))
        placement["restored_from_epoch"] = len(history)  # the trial's records show where it continued
        fit(config, data.train, data.val, callbacks=[TuneReporter()], on_epoch=remember, threads=threads,
            resume=(Path(folder) / KERAS_FILE, history), init=data.init)
