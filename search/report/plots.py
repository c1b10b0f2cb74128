"""The report's pictures: the search's history, the hyperparameters' importance, the learning
curves and the confusion matrix, each as PNG bytes."""

from __future__ import annotations

import io
from typing import Optional, Sequence

import numpy as np

from search.records import TrialRecord


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _figure().close(fig)
    return buffer.getvalue()


def plot_search_history(trials: Sequence[TrialRecord], metric: str) -> Optional[bytes]:
    """Each trial's best validation metric in start order, with the running best."""
    values = [t.best_metric for t in trials if t.best_metric is not None]
    if not values:
        return None
    plt = _figure()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.scatter(range(1, len(values) + 1), values, s=14, label="trial")
    ax.plot(range(1, len(values) + 1), np.maximum.accumulate(values), color="C1", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(metric)
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    return _png(fig)


def importance(trials: Sequence[TrialRecord], metric: str) -> dict[str, float]:
    """How much each hyperparameter explains the trials' best metric.

    Impurity importance of a random forest fitted to configs against results (the
    idea behind Optuna's fANOVA evaluator); empty with fewer than 4 scored trials.
    """
    from sklearn.ensemble import RandomForestRegressor  # 1.8 s to import: only when a report is written

    scored = [t for t in trials if t.best_metric is not None]
    if len(scored) < 4:
        return {}
    names = sorted({k for t in scored for k in t.config})
    columns = []
    for name in names:
        raw = [t.config.get(name) for t in scored]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw if v is not None):
            columns.append([np.nan if v is None else float(v) for v in raw])
        else:
            levels = sorted({str(v) for v in raw})
            columns.append([float(levels.index(str(v))) for v in raw])
    features = np.nan_to_num(np.array(columns, dtype=float).T, nan=-1.0)
    target = np.array([t.best_metric for t in scored])
    forest = RandomForestRegressor(n_estimators=200, random_state=0).fit(features, target)
    ranked = sorted(zip(names, forest.feature_importances_), key=lambda kv: -kv[1])
    return {name: float(value) for name, value in ranked}


def plot_importance(trials: Sequence[TrialRecord], metric: str) -> Optional[bytes]:
    """Bar chart of :func:`importance`, top 12."""
    ranked = list(importance(trials, metric).items())[:12]
    if not ranked:
        return None
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.barh([n for n, _ in ranked][::-1], [v for _, v in ranked][::-1])
    ax.set_xlabel(f"importance for {metric}")
    return _png(fig)


def plot_learning_curves(final_history: Sequence[Mapping[str, float]], trials: Sequence[TrialRecord],
                         metric: str) -> Optional[bytes]:
    """Validation curves of the five best trials, and the final model's training curves."""
    plt = _figure()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    top = sorted([t for t in trials if t.best_metric is not None], key=lambda t: -t.best_metric)[:5]
    for t in top:
        rows = [r for r in t.history if metric in r]
        left.plot([r["epoch"] for r in rows], [r[metric] for r in rows], label=t.trial_id)
    left.set_title(f"best trials: {metric}")
    left.set_xlabel("epoch")
    if top:
        left.legend(fontsize=7)
    epochs = [r["epoch"] for r in final_history]
    right.plot(epochs, [r["train_loss"] for r in final_history], label="train loss")
    right.plot(epochs, [r["train_accuracy"] for r in final_history], label="train accuracy")
    right.set_title("final model (train + validation)")
    right.set_xlabel("epoch")
    right.legend(fontsize=7)
    return _png(fig)


def plot_confusion(matrix: Sequence[Sequence[int]], class_names: Sequence[str]) -> bytes:
    """The test confusion matrix, rows true and columns predicted."""
    plt = _figure()
    values = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    ax.imshow(values, cmap="Blues")
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (i, j), v in np.ndenumerate(values):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > values.max() / 2 else "black")
    return _png(fig)
