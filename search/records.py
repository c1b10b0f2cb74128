"""The records the stages hand each other: a trial, the confirmation, a final member, the final
model and the report.

Each is a dataclass with named fields that every consumer reads the same way (the run,
the report, the tuner comparison in ``experiments/``); those that are stored have
``to_json``/``from_json``, and ``report.json`` is :meth:`Report.to_json`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import numpy as np

from fer_core.config import TrainConfig
from search.tuning.space import to_config

TRIAL_STATUSES = ("completed", "stopped_early", "failed", "unfinished", "prior")
SCORED = ("completed", "stopped_early")


def row_seconds(row: Mapping[str, Any]) -> float:
    """Seconds one reported epoch took, training and validation; ``nan`` when it says none."""
    seconds = row.get("train_seconds")
    return seconds + row.get("val_seconds", 0.0) if isinstance(seconds, (int, float)) else math.nan


def finite(value: Any) -> bool:
    """Whether ``value`` is a finite number."""
    return isinstance(value, (int, float)) and math.isfinite(value)


@dataclass(frozen=True)
class TrialRecord:
    """One trial of the search: its config, its final and best metric, its epochs and per-epoch rows.

    ``status`` is ``completed`` (ran its whole epoch budget, or its config's fewer epochs),
    ``stopped_early`` (the scheduler or the deadline ended it), ``failed`` (it raised:
    ``error`` holds the reason), ``unfinished``, or ``prior``: a config of the built-in prior that
    the final stage trains without a search (:mod:`search.tuning.prior`)."""

    trial_id: str
    status: str
    config: dict[str, Any]
    final_metric: Optional[float] = None
    best_metric: Optional[float] = None
    epochs: int = 0
    node_ip: Optional[str] = None
    node_id: Optional[str] = None
    tf_threads: Optional[int] = None
    error: Optional[str] = None
    history: tuple[dict[str, Any], ...] = ()

    @property
    def scored(self) -> bool:
        """Whether it finished with a score the ranking can use."""
        return self.status in SCORED and self.final_metric is not None

    @property
    def train_config(self) -> TrainConfig:
        """Its config as :class:`TrainConfig` (``augment`` is a switch of the space, not a field)."""
        return to_config(self.config)

    @property
    def epoch_seconds(self) -> float:
        """The median seconds one of its epochs took (training and validation); 0 when unknown."""
        seconds = [s for s in map(row_seconds, self.history) if math.isfinite(s)]
        return float(np.median(seconds)) if seconds else 0.0

    def image_seconds(self, n_train: int) -> float:
        """Seconds per training face (trained on ``n_train`` faces), whatever an epoch was (a pass,
        or a round on a large data set): the cost of its config; 0 when unknown."""
        return self.epoch_seconds / self.train_config.images_per_epoch(max(1, n_train))

    def to_json(self) -> dict[str, Any]:
        """A plain dict for ``report.json``."""
        return {**dataclasses.asdict(self), "history": list(self.history)}

    @classmethod
    def from_json(cls, row: Mapping[str, Any]) -> "TrialRecord":
        """The record :meth:`to_json` wrote."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in row.items() if k in names} | {"history": tuple(row.get("history") or ())})


@dataclass(frozen=True)
class Confirmation:
    """The cross-validation of the leading configs: scores by trial id, the candidates ranked by them.

    ``ranked`` holds the confirmed candidates best first, then the unconfirmed in the search's
    order; ``left_out`` those that diverged or failed in a fold; ``skipped`` says why none was
    confirmed, if so."""

    folds: int
    n_scored: int
    ranked: tuple[TrialRecord, ...]
    scores: Mapping[str, Mapping[str, Any]]
    seconds: float
    skipped: Optional[str] = None
    left_out: tuple[TrialRecord, ...] = ()

    @property
    def excluded(self) -> list[str]:
        """Trial ids whose configs diverged or failed in a fold: out of the ranking and of the final model."""
        return [trial_id for trial_id, score in self.scores.items() if "cv_accuracy" not in score]

    def to_json(self) -> dict[str, Any]:
        """What the report keeps: per candidate, its validation and cross-validated figures."""
        return {"folds": self.folds, "n_scored": self.n_scored, "seconds": round(self.seconds, 1),
                "skipped": self.skipped,
                "trials": [{"trial_id": t.trial_id, "val_metric": t.final_metric, **self.scores.get(t.trial_id, {})}
                           for t in (*self.ranked, *self.left_out)]}


@dataclass(frozen=True)
class Member:
    """A network of the final model: the trial it comes from, the config it trained with, the
    training task's ``result`` (weights, history, test probabilities and metrics) and its attempts."""

    trial: TrialRecord
    config: TrainConfig
    result: Mapping[str, Any]
    attempts: int = 1

    @property
    def history(self) -> list[dict[str, Any]]:
        """Its retrain's per-epoch rows."""
        return list(self.result.get("history") or [])

    def to_json(self) -> dict[str, Any]:
        """The report's row: trial, input, validation and test figures alone, and the epoch its training
        went on from after an interruption (0: trained in one go)."""
        metrics = self.result["metrics"]
        return {"trial_id": self.trial.trial_id, "normalize": self.config.normalize,
                "val_metric": self.trial.final_metric, "epochs": self.config.epochs, "seed": self.config.seed,
                "attempts": self.attempts, "resumed_from_epoch": int(self.result.get("resumed_from_epoch", 0)),
                "test_accuracy": metrics["accuracy"], "test_macro_f1": metrics["macro_f1"]}


@dataclass(frozen=True)
class FinalModel:
    """The assembled model and how it came to be: the ``kept`` members best first, the ``dropped``
    ones (``{"trial_id", "normalize", "reason", "seeds"}``), and the seed recipe's result (or
    ``{"failed": reason}``)."""

    model: Any
    kept: tuple[Member, ...]
    dropped: tuple[dict[str, Any], ...]
    seed_recipe: Mapping[str, Any]


@dataclass(frozen=True)
class Finished:
    """What follows the search: the confirmation, the final model, the members it was planned from,
    its test figures, and the seconds its steps took."""

    confirmation: Confirmation
    final: FinalModel
    members: tuple[TrialRecord, ...]
    test: Mapping[str, Any]
    timings: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Report:
    """The run's ``report.json``: data and split, the final model's test figures beside the seed's
    recipe and the majority class, the confirmation, the members, every trial."""

    # the data and its split
    name: str
    data: str
    n_images: int
    split: str
    faces: Optional[dict[str, Any]]
    # its parts
    n_train: int
    n_val: int
    n_test: int
    # the search's settings
    metric: str
    max_epochs: int
    round_images: Optional[int]
    cost_weight: float
    seed: int
    # the time budget
    time_budget_s: Optional[float]
    budget_plan: Optional[dict[str, float]]
    initialized_from: Optional[dict[str, Any]]  # the pretrained network's card, with --init
    # the final model on the held-out split
    test_accuracy: float
    test_macro_f1: float
    test_balanced_accuracy: float
    test_accuracy_ci95: tuple[float, float]
    majority_accuracy: float
    # the seed notebook's recipe beside it
    seed_baseline_accuracy: float
    seed_recipe_test_accuracy: Optional[float]
    seed_recipe_test_macro_f1: Optional[float]
    seed_recipe_failed: Optional[str]
    seed_recipe_epochs: int
    # the trials
    trials_completed: int
    trials_stopped_early: int
    trials_failed: int
    best_trial_id: str
    best_val_metric: Optional[float]
    # the best config, its confirmation, and the final model's members
    best_config: dict[str, Any]
    confirmation: dict[str, Any]
    final_epochs_scale: float
    final_mixup: float
    final_inputs: list[str]
    # the members alone, and where the time went
    ensemble: list[dict[str, Any]]
    ensemble_dropped: list[dict[str, Any]]
    search_wall_clock_s: float
    timings: dict[str, float]
    # the full figures, every trial, the exported files
    test: dict[str, Any]
    seed_recipe_test: Optional[dict[str, Any]]
    trials: tuple[TrialRecord, ...]
    exported: dict[str, str]
    # why the run trained the built-in prior's configs instead of searching; None: it searched
    search_skipped: Optional[str] = None

    def to_json(self) -> dict[str, Any]:
        """The plain dict written as ``report.json``."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return fields | {"trials": [t.to_json() for t in self.trials],
                         "test_accuracy_ci95": list(self.test_accuracy_ci95)}

    @classmethod
    def from_json(cls, row: Mapping[str, Any]) -> "Report":
        """The report :meth:`to_json` wrote (``report.json`` read back)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in row.items() if k in names}
                   | {"trials": tuple(TrialRecord.from_json(t) for t in row["trials"]),
                      "test_accuracy_ci95": tuple(row["test_accuracy_ci95"])})


@dataclass(frozen=True)
class FoldRecord:
    """One outer fold of the papers' protocol: its held-out faces and people, the final model's and the
    seed recipe's figures on them, and the config that won on the other folds."""

    fold: int
    n_test: int
    people: Optional[int]  # distinct subjects in the held-out part; None without subject ids
    test: dict[str, Any]  # fer_core.evaluate.evaluate_predictions on the held-out part
    seed_recipe_test: Optional[dict[str, Any]]
    best_trial_id: str
    best_config: dict[str, Any]
    trials_completed: int
    trials_failed: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        """A plain dict for ``fold.json`` and ``report.json``."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, row: Mapping[str, Any]) -> "FoldRecord":
        """The record :meth:`to_json` wrote."""
        return cls(**{f.name: row[f.name] for f in dataclasses.fields(cls)})


@dataclass(frozen=True)
class FoldsReport:
    """A run of the papers' protocol: every face tested once, by a model that never saw its person
    (by subject) or the face (by image); the folds pooled beside the seed recipe and the majority class."""

    name: str
    data: str
    n_images: int
    folds: int
    by_subject: bool
    metric: str
    seed: int
    time_budget_s: Optional[float]
    initialized_from: Optional[dict[str, Any]]
    # every face, pooled
    test: dict[str, Any]
    seed_recipe_test: Optional[dict[str, Any]]
    # each fold
    fold_records: tuple[FoldRecord, ...]
    run_s: float

    def to_json(self) -> dict[str, Any]:
        """``report.json``: the pooled figures at the top, as a one-split run's report names them."""
        seed = self.seed_recipe_test or {}
        return {"name": self.name, "data": self.data, "n_images": self.n_images, "protocol": self.protocol,
                "split": f"{self.folds}-fold", "by_subject": self.by_subject, "metric": self.metric,
                "seed": self.seed, "time_budget_s": self.time_budget_s, "initialized_from": self.initialized_from,
                "n_test": self.test["n"], "test_accuracy": self.test["accuracy"],
                "test_macro_f1": self.test["macro_f1"], "test_balanced_accuracy": self.test["balanced_accuracy"],
                "test_accuracy_ci95": self.test["accuracy_ci95"], "majority_accuracy": self.test["majority_accuracy"],
                "seed_recipe_test_accuracy": seed.get("accuracy"), "seed_recipe_test_macro_f1": seed.get("macro_f1"),
                "test": self.test, "seed_recipe_test": self.seed_recipe_test,
                "folds": [f.to_json() for f in self.fold_records], "run_s": round(self.run_s, 1), "exported": None}

    @property
    def protocol(self) -> str:
        """The protocol in words, e.g. ``10-fold subject-independent``."""
        return f"{self.folds}-fold " + ("subject-independent (by subject)" if self.by_subject else "by image")
