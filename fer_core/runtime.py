"""The TensorFlow runtime: importing and configuring it once per process, and running a model.

Nothing here imports TensorFlow or Keras at import time; :func:`configure_tensorflow` does,
so that modules which only name these functions stay light.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Iterator, Optional

import numpy as np

log = logging.getLogger(__name__)

PREDICT_BATCH = 256  # faces per predict_on_batch call


def configure_tensorflow(threads: Optional[int] = None):
    """Import TensorFlow quietly, pin its thread pools to ``threads``; return the module.

    Thread pools and GPU memory growth can only be set before TensorFlow runs its first
    op, so they are set here, right after the import and before the runtime starts. In
    a process where it already runs (a reused worker) the setting stays as it was and
    a debug line says so. Two trials on two cores must not each start a pool per core.

    TensorFlow's C++ runtime prints oneDNN and CUDA notices to stderr before its log
    level applies, once per process: in a search that is every Ray worker. The first
    import and start-up run with stderr pointed at /dev/null; later calls leave stderr
    alone, so nothing else written to it is lost. An import that fails still raises.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    first = "tensorflow" not in sys.modules
    with stderr_muted() if first else contextlib.nullcontext():
        import tensorflow as tf

        if threads and tf.config.threading.get_intra_op_parallelism_threads() != threads:
            try:
                tf.config.threading.set_intra_op_parallelism_threads(threads)
                tf.config.threading.set_inter_op_parallelism_threads(threads)
            except RuntimeError:
                log.debug("TensorFlow already running; keeping intra-op threads at %d",
                          tf.config.threading.get_intra_op_parallelism_threads())
        for gpu in tf.config.list_physical_devices("GPU"):
            try:
                tf.config.experimental.set_memory_growth(gpu, True)
            except RuntimeError:
                pass
        if first:
            tf.constant(0)  # starts the runtime (and its CUDA probe) while stderr is muted
    tf.get_logger().setLevel(logging.ERROR)
    return tf


@contextlib.contextmanager
def stderr_muted() -> Iterator[None]:
    """C and C++ libraries' own lines (TensorFlow's start-up, FFmpeg's decoder) kept off the terminal:
    file descriptor 2 points at /dev/null inside the block (C++ code writes there, not to ``sys.stderr``)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def predict_proba(model, images: np.ndarray, batch_size: int = PREDICT_BATCH) -> np.ndarray:
    """Class probabilities for ``images`` (``float32 [N,48,48,1]``), without augmentation.

    Batch by batch through ``predict_on_batch``: ``predict`` sets up a data pipeline and
    a progress callback on every call, which costs more than the network itself on a
    validation set of a few hundred faces, and this runs after every epoch of every trial
    (experiments/README.md, "The 50-trial search").
    """
    if len(images) == 0:  # Keras' predict fails on no input
        return np.zeros((0, *model.output_shape[1:]), dtype=np.float32)
    parts = [np.asarray(model.predict_on_batch(images[start:start + batch_size]))
             for start in range(0, len(images), batch_size)]
    return np.concatenate(parts) if len(parts) > 1 else parts[0]
