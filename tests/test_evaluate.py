"""Evaluation figures against scikit-learn on known inputs."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, f1_score

from fer_core.evaluate import bootstrap_accuracy_ci, constant_scores, evaluate_predictions, majority_accuracy


def test_metrics_match_sklearn_on_known_predictions() -> None:
    y_true = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
    y_pred = np.array([0, 0, 1, 0, 1, 2, 2, 2, 0, 2])
    result = evaluate_predictions(y_true, y_pred, ["a", "b", "c"])
    assert result["accuracy"] == 0.7
    assert result["majority_accuracy"] == 0.4
    assert np.isclose(result["macro_f1"], f1_score(y_true, y_pred, average="macro"))
    assert np.isclose(result["balanced_accuracy"], balanced_accuracy_score(y_true, y_pred))
    assert result["confusion_matrix"] == confusion_matrix(y_true, y_pred).tolist()
    assert result["per_class"]["a"]["recall"] == 0.75 and result["per_class"]["b"]["support"] == 2
    low, high = result["accuracy_ci95"]
    assert low < 0.7 < high and 0.0 <= low and high <= 1.0


def test_a_model_that_ignores_small_classes_shows_in_macro_f1() -> None:
    y_true = np.array([0] * 90 + [1] * 5 + [2] * 5)
    y_pred = np.zeros(100, dtype=int)
    result = evaluate_predictions(y_true, y_pred, ["big", "small", "tiny"])
    assert result["accuracy"] == 0.9 == result["majority_accuracy"]
    assert result["macro_f1"] < 0.35 and np.isclose(result["balanced_accuracy"], 1 / 3)


def test_bootstrap_interval_narrows_with_more_data() -> None:
    rng = np.random.default_rng(0)
    small = rng.random(50) < 0.8
    large = rng.random(5000) < 0.8
    ones = lambda mask: (np.ones(mask.size, int), mask.astype(int))  # noqa: E731
    w_small = np.diff(bootstrap_accuracy_ci(*ones(small)))[0]
    w_large = np.diff(bootstrap_accuracy_ci(*ones(large)))[0]
    assert w_large < w_small / 4


def test_metrics_are_json_ready() -> None:
    import json

    result = evaluate_predictions(np.array([0, 1, 1]), np.array([0, 1, 0]), ["x", "y"])
    assert json.loads(json.dumps(result)) == result
    assert majority_accuracy(np.array([2, 2, 1])) == 2 / 3


def test_the_constant_answer_is_the_training_sets_most_common_class() -> None:
    """Scored on validation, whose most common class may differ."""
    scores = constant_scores(np.array([0, 0, 1]), np.array([1, 1, 0, 2]), n_classes=3)
    assert scores["accuracy"] == 0.25  # answers class 0, right once of 4
    assert scores["macro_f1"] == pytest.approx((2 * 1 * 0.25 / 1.25) / 3)  # class 0: precision 1/4, recall 1
    assert constant_scores(np.array([1]), np.array([1, 1, 0, 2]), n_classes=3)["accuracy"] == 0.5


def test_a_paired_difference_counts_the_faces_only_one_system_gets_right() -> None:
    from scipy.stats import binomtest

    from fer_core.evaluate import paired_accuracy_difference

    y_true = np.zeros(100, dtype=int)
    a = np.where(np.arange(100) < 80, 0, 1)  # right on faces 0-79
    b = np.where((np.arange(100) >= 10) & (np.arange(100) < 75), 0, 1)  # right on faces 10-74
    result = paired_accuracy_difference(y_true, a, b)
    assert result["difference"] == pytest.approx(0.15)
    assert (result["a_only"], result["b_only"]) == (15, 0)
    assert result["mcnemar_p"] == pytest.approx(binomtest(0, 15, 0.5).pvalue)
    low, high = result["ci95"]
    assert 0 < low < 0.15 < high and not result["tie"]
    same = paired_accuracy_difference(y_true, a, a)
    assert same["difference"] == 0 and same["tie"] and same["mcnemar_p"] == 1.0
