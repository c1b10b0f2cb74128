"""The TensorFlow runtime: threads pinned once, start-up notices muted once, batched prediction."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from conftest import ROOT
from fer_core.config import TrainConfig
from fer_core.synthetic import make_faces

SMALL = dict(conv_blocks=2, base_filters=8, dense_units=32, padding="same", batch_size=32)


def test_predict_proba_in_batches_matches_keras_predict() -> None:
    """Batch by batch (last batch short, a single batch, no faces) it gives Keras' own
    ``predict`` figures, row for row."""
    import keras

    from fer_core.model import build_cnn
    from fer_core.runtime import predict_proba

    faces = make_faces(60, seed=1)
    keras.utils.set_random_seed(3)
    model = build_cnn(TrainConfig(**SMALL, batch_norm=True), n_classes=faces.n_classes)
    expected = np.asarray(model.predict(faces.images, verbose=0))
    for batch_size in (7, len(faces), 1000):
        got = predict_proba(model, faces.images, batch_size=batch_size)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-5, err_msg=f"batch_size={batch_size}")
    assert predict_proba(model, faces.images[:0]).shape == (0, faces.n_classes)


def test_threads_are_pinned_even_when_tensorflow_is_configured_twice() -> None:
    code = ("from fer_core.runtime import configure_tensorflow; configure_tensorflow(1); "
            "tf = configure_tensorflow(1); import keras; "
            "print(tf.config.threading.get_intra_op_parallelism_threads(), "
            "tf.config.threading.get_inter_op_parallelism_threads())")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["1", "1"], result.stderr[-2000:]
    assert "oneDNN" not in result.stderr and "cuda" not in result.stderr.lower()


def test_configuring_tensorflow_again_leaves_stderr_alone() -> None:
    """Only the first import mutes stderr (TensorFlow's start-up notices); a later call, which the
    search's TensorBoard callback makes for every result, must not hide what others write there."""
    code = ("import os; from fer_core.runtime import configure_tensorflow; configure_tensorflow(1); "
            "calls = []; real = os.dup2; os.dup2 = lambda *a: calls.append(a) or real(*a); "
            "configure_tensorflow(1); configure_tensorflow(); print(len(calls))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["0"], result.stderr[-2000:]
