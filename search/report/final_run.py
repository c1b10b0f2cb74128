"""TensorBoard's ``final`` run: the retrained model's curves and its test confusion matrix, beside
the trials' runs that :mod:`search.tuning.tensorboard` writes."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Mapping, Sequence

from fer_core.runtime import configure_tensorflow
from fer_core.staging import staging_folder

SCALARS = ("val_accuracy", "val_macro_f1", "val_loss", "train_loss", "train_accuracy", "learning_rate")


def write_final_run(logdir: Path, history: Sequence[Mapping[str, float]], class_names: Sequence[str],
                    figure_png: bytes) -> None:
    """The retrained model's per-epoch curves and its test confusion matrix as an image.

    Written into a fresh sibling folder that then replaces ``logdir``: a final model rebuilt by
    ``--resume`` replaces the earlier curves instead of adding a second event file beside them.
    """
    tf = configure_tensorflow()

    logdir = Path(logdir)
    logdir.parent.mkdir(parents=True, exist_ok=True)
    fresh = staging_folder(logdir)
    writer = tf.summary.create_file_writer(str(fresh))
    with writer.as_default():
        for row in history:
            for tag in SCALARS:
                value = row.get(tag)
                if isinstance(value, (int, float)) and math.isfinite(value):
                    tf.summary.scalar(f"final/{tag}", value, step=int(row["epoch"]))
        image = tf.io.decode_png(figure_png, channels=4)[tf.newaxis]
        tf.summary.image("final/confusion_matrix", image, step=0)
        tf.summary.text("final/classes", ", ".join(class_names), step=0)
    writer.close()
    if logdir.exists():
        shutil.rmtree(logdir)
    fresh.rename(logdir)
