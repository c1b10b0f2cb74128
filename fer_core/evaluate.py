"""Test-set evaluation: the figures the evaluation protocol asks for, as a JSON-ready dict.

Accuracy alone hides a model that ignores the small classes (contempt, fear and sadness
in CK+), so every evaluation also carries macro-F1, balanced accuracy, per-class
precision and recall, the confusion matrix, a bootstrap 95% interval for accuracy and
the majority-class accuracy of the same test set.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from fer_core.runtime import predict_proba

SEED_BASELINE_ACCURACY = 0.70  # the seed notebook's reported CK+ test accuracy (random 80/20 split)
BOOTSTRAP_SAMPLES = 1000
BOOTSTRAP_SEED = 0


def evaluate_predictions(y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str],
                         n_bootstrap: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED) -> dict[str, Any]:
    """Score integer predictions against integer labels; return plain Python types.

    Keys: ``accuracy``, ``macro_f1``, ``balanced_accuracy``, ``accuracy_ci95`` (a
    percentile bootstrap over test images), ``majority_accuracy`` (always predicting the
    test set's most frequent class), ``per_class`` (precision, recall, F1, support by
    class name), ``confusion_matrix`` (rows true, columns predicted), ``class_names``, ``n``.
    """
    from sklearn.metrics import balanced_accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape or y_true.ndim != 1 or y_true.size == 0:
        raise ValueError(f"expected two equal-length non-empty label vectors, got {y_true.shape} and {y_pred.shape}")
    labels = np.arange(len(class_names))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0)
    present = np.unique(y_true)
    return {
        "n": int(y_true.size),
        "accuracy": float((y_true == y_pred).mean()),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        # balanced accuracy over the classes present in the test set (a class absent from
        # a subject split's test part has no recall to average)
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)) if present.size > 1
        else float((y_true == y_pred).mean()),
        "accuracy_ci95": bootstrap_accuracy_ci(y_true, y_pred, n_bootstrap, seed),
        "majority_accuracy": majority_accuracy(y_true),
        "per_class": {name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
                      for name, p, r, f, s in zip(class_names, precision, recall, f1, support)},
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "class_names": list(class_names),
    }


def evaluate_confusion(matrix: Sequence[Sequence[int]], class_names: Sequence[str]) -> dict[str, Any]:
    """:func:`evaluate_predictions` of the (true, predicted) pairs a confusion matrix counts (rows true,
    columns predicted): the figures of several test parts pooled, from their summed matrices."""
    counts = np.asarray(matrix, dtype=np.int64)
    true, pred = np.nonzero(counts)
    repeats = counts[true, pred]
    return evaluate_predictions(np.repeat(true, repeats), np.repeat(pred, repeats), class_names)


def evaluate_model(model, data) -> dict[str, Any]:
    """Predict ``data`` (a :class:`fer_core.data.Dataset`) with ``model`` and score it."""
    predicted = predict_proba(model, data.images).argmax(axis=1)
    return evaluate_predictions(data.labels, predicted, data.class_names)


def majority_accuracy(y_true: np.ndarray) -> float:
    """Accuracy of always answering the most frequent class of ``y_true``."""
    counts = np.bincount(np.asarray(y_true, dtype=np.int64))
    return float(counts.max() / counts.sum())


def constant_scores(train_labels: np.ndarray, val_labels: np.ndarray, n_classes: int) -> dict[str, float]:
    """``accuracy`` and ``macro_f1`` on ``val_labels`` of always answering the most frequent class
    of ``train_labels``: what a network that learned only the class shares scores."""
    from sklearn.metrics import f1_score

    answer = int(np.bincount(np.asarray(train_labels, dtype=np.int64), minlength=n_classes).argmax())
    y_true = np.asarray(val_labels, dtype=np.int64)
    y_pred = np.full_like(y_true, answer)
    return {"accuracy": float((y_true == y_pred).mean()),
            "macro_f1": float(f1_score(y_true, y_pred, labels=np.arange(n_classes), average="macro", zero_division=0))}


def bootstrap_accuracy_ci(y_true: np.ndarray, y_pred: np.ndarray, n_samples: int = BOOTSTRAP_SAMPLES,
                          seed: int = BOOTSTRAP_SEED) -> list[float]:
    """A percentile bootstrap 95% interval ``[low, high]`` for accuracy, resampling images."""
    correct = (np.asarray(y_true) == np.asarray(y_pred)).astype(np.float64)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, correct.size, size=(n_samples, correct.size))
    means = correct[draws].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return [float(low), float(high)]


def paired_accuracy_difference(y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray,
                               n_samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED) -> dict[str, Any]:
    """Two systems' predictions on the same faces, compared pairwise: accuracy of ``a`` minus ``b``.

    Keys: ``difference``; ``ci95``, a paired percentile bootstrap interval (the same resampled
    faces for both); ``a_only`` and ``b_only``, the faces only one of them gets right; ``mcnemar_p``,
    the exact two-sided McNemar test on those; ``tie``, whether the interval holds 0. A paired
    comparison resolves a smaller difference than two separate intervals do.
    """
    from scipy.stats import binomtest

    y_true = np.asarray(y_true)
    a = (np.asarray(pred_a) == y_true).astype(np.float64)
    b = (np.asarray(pred_b) == y_true).astype(np.float64)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, a.size, size=(n_samples, a.size))
    low, high = np.percentile(a[draws].mean(axis=1) - b[draws].mean(axis=1), [2.5, 97.5])
    a_only, b_only = int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum())
    p = binomtest(min(a_only, b_only), a_only + b_only, 0.5).pvalue if a_only + b_only else 1.0
    return {"difference": float(a.mean() - b.mean()), "ci95": [float(low), float(high)], "a_only": a_only,
            "b_only": b_only, "mcnemar_p": float(p), "tie": bool(low <= 0 <= high)}
