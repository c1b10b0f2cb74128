"""The run's time budget: how ``--time-budget`` is shared by the stages, and what they cost.

The budget bounds the whole run. What is left of it after start-up (the data loaded, Ray
started), less an allowance for the export, is shared: :data:`SEARCH_SHARE` for the search,
:data:`CONFIRM_SHARE` for the confirmation, :data:`FINAL_SHARE` for the final model. Each
stage sizes its work from the epoch times the trials measured (:func:`epoch_seconds`); the
search keeps to its share through :mod:`search.deadline`; the final stage gets what the
search and the confirmation left (:meth:`BudgetPlan.final_left`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from fer_core.config import TrainConfig

SEARCH_SHARE = 0.5
CONFIRM_SHARE = 0.2  # with --confirm 0 it goes to the search; off by the data's size, to the final model
FINAL_SHARE = 0.3
EXPORT_ALLOWANCE_S = 30.0  # export, TensorBoard's final run and the report: ~13 s on the synthetic faces
# a training task's cost beyond its epochs (worker start, model build, graph tracing, scoring):
# 37 s for 2 short retrains on 2 busy cores; the confirmation's folds and the final retrains alike
TASK_OVERHEAD_S = 12.0


@dataclass(frozen=True)
class BudgetPlan:
    """Seconds of the budget for each stage, planned once, when the run starts."""

    total_s: float
    startup_s: float
    search_s: float
    confirm_s: float
    final_s: float

    @classmethod
    def of(cls, total_s: float, startup_s: float, confirm: bool) -> "BudgetPlan":
        """Share what ``total_s`` leaves after ``startup_s`` and the export's allowance."""
        usable = max(0.0, total_s - startup_s - EXPORT_ALLOWANCE_S)
        search = SEARCH_SHARE + (0.0 if confirm else CONFIRM_SHARE)
        return cls(total_s, startup_s, usable * search, usable * CONFIRM_SHARE if confirm else 0.0,
                   usable * FINAL_SHARE)

    def final_left(self, search_spent_s: float, confirm_spent_s: float) -> float:
        """The final stage's seconds: what the three stages' shares leave after the search and the
        confirmation spent theirs. A confirmation skipped or cut short leaves its time to the
        final model; a search that overran (a trial stops at its next epoch) takes it from there."""
        return max(0.0, self.search_s + self.confirm_s + self.final_s - search_spent_s - confirm_spent_s)

    def to_dict(self) -> dict[str, float]:
        """Rounded seconds, for ``run.json`` and the report."""
        return {k: round(v, 1) for k, v in asdict(self).items()}


def row_seconds(row: dict[str, Any]) -> float:
    """Seconds one reported epoch took, training and validation; ``nan`` when it says none."""
    seconds = row.get("train_seconds")
    return seconds + row.get("val_seconds", 0.0) if isinstance(seconds, (int, float)) else math.nan


def epoch_seconds(trial: dict[str, Any]) -> float:
    """The median seconds one epoch of ``trial`` took (training and validation); 0 when unknown."""
    seconds = [s for s in map(row_seconds, trial.get("history") or []) if math.isfinite(s)]
    return float(np.median(seconds)) if seconds else 0.0


def image_seconds(trial: dict[str, Any], n_train: int) -> float:
    """Seconds per training face of ``trial`` (trained on ``n_train`` faces), from its epoch time: the
    cost of its config, whatever an epoch was (a pass, or a round on a large data set); 0 when unknown."""
    from search.space import to_config

    return epoch_seconds(trial) / to_config(trial["config"]).images_per_epoch(max(1, n_train))


def training_seconds(config: TrainConfig, n_train: int, per_image_s: float) -> float:
    """Seconds ``config`` trains on ``n_train`` faces at ``per_image_s`` a face (:func:`image_seconds`)."""
    return config.epochs * config.images_per_epoch(n_train) * per_image_s


def makespan(durations: list[float], slots: int) -> float:
    """Seconds until ``durations`` end when they start in order, ``slots`` at a time (as Ray runs tasks)."""
    free = [0.0] * max(1, slots)
    for duration in durations:
        free.sort()
        free[0] += duration
    return max(free)
