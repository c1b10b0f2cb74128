"""The search's progress, every 30 s: a line for the user, and the search time saved for ``--resume``.

The line says how many trials are done of how many, the best validation figure any trial has
reported so far (not the trials' latest results, which fall when a trial overfits) next to the
seed recipe's trial's best (the search's first), and about how long the run has left,
confirmation and final model included. The search time spent is saved in the run's
:class:`search.budget.Budget`, so that a budgeted run that is killed and resumed goes on
with what is left of its share.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Optional

from ray.tune import Callback

from search.budget import Budget, now

log = logging.getLogger("search.tuning.progress")

PERIOD_S = 30.0  # at most this often
DONE = ("TERMINATED", "ERROR")
# the confirmation (6 configs x 3 folds) and the final stage (5 members at 3x, the seed's recipe)
# of an unbounded run cost about 18 and 15 trials' worth: counted so the user is not surprised
AFTER_SEARCH_TRIALS = 3 * 6 + 15


class SearchProgress(Callback):
    """A Tune callback that logs the progress line and saves the search time in ``budget``."""

    def __init__(self, budget: Budget, trials: int, metric: str, slots: int) -> None:
        self.budget = budget
        self.trials, self.metric, self.slots = trials, metric, slots
        self._last = time.monotonic()
        self._best: dict[str, float] = {}  # trial id -> the best ``metric`` it has reported (the search maximizes)

    def __getstate__(self) -> dict:
        return {"budget": self.budget, "trials": self.trials, "metric": self.metric, "slots": self.slots}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._last = time.monotonic()
        self._best = {}  # a resumed search reads them again from its trials (``best_so_far``)

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        if time.monotonic() - self._last < PERIOD_S:
            return
        self._last = time.monotonic()
        self.budget.note_search_time()
        log.info(progress_line(trials, self.trials, self.metric, self.seconds_left(trials), self.best_so_far(trials)))

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info) -> None:
        self._keep(trial.trial_id, _finite(result.get(self.metric)))

    def best_so_far(self, trials: list) -> dict[str, float]:
        """Each trial's best ``metric`` so far: the results this callback saw and what the trials
        keep of theirs (Tune's running max, restored with them on a resume), so it never goes down."""
        for trial in trials:
            self._keep(getattr(trial, "trial_id", None), _reported_best(trial, self.metric))
        return dict(self._best)

    def _keep(self, trial_id: Optional[str], value: Optional[float]) -> None:
        if trial_id is not None and value is not None and value > self._best.get(trial_id, -math.inf):
            self._best[trial_id] = value

    def seconds_left(self, trials: list) -> Optional[float]:
        """The run's time left: the budget's, or an estimate from the trials' own times."""
        deadline = self.budget.search_deadline()
        if math.isfinite(deadline):
            return max(0.0, deadline - now()) + self.budget.after_search_s()
        durations = [t.last_result.get("time_total_s") for t in trials if t.status in DONE and t.last_result]
        durations = [d for d in durations if isinstance(d, (int, float)) and math.isfinite(d)]
        if not durations:
            return None
        trial_s = sum(durations) / len(durations)
        waiting = max(0, self.trials - sum(t.status in DONE for t in trials))
        return (waiting + AFTER_SEARCH_TRIALS) * trial_s / max(1, self.slots)


def progress_line(trials: list, total: int, metric: str, seconds_left: Optional[float],
                  bests: Optional[dict] = None) -> str:
    """``12/50 trials done; best val_accuracy 0.861 (seed recipe 0.520); about 6 min left``.

    The figures are each trial's best so far: ``bests`` (trial id -> value, ``SearchProgress``'s)
    with what the trial keeps itself, never its latest result alone.
    """
    bests = bests or {}
    done = sum(t.status in DONE for t in trials)
    values = [_higher(_reported_best(t, metric), bests.get(getattr(t, "trial_id", None))) for t in trials]
    best = max((v for v in values if v is not None), default=None)
    seed = values[0] if values else None
    left = "time left not known yet" if seconds_left is None else f"about {_minutes(seconds_left)} left"
    return (f"{done}/{total} trials done; best {metric} {_fmt(best)} (seed recipe {_fmt(seed)}); {left}")


def _reported_best(trial: Any, metric: str) -> Optional[float]:
    """The best ``metric`` a trial keeps: Tune's running max (``metric_analysis``) or its latest result."""
    analysis = (getattr(trial, "metric_analysis", None) or {}).get(metric) or {}
    return _higher(_finite(analysis.get("max")), _finite((trial.last_result or {}).get(metric)))


def _finite(value: Any) -> Optional[float]:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _higher(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return b if a is None else a if b is None else max(a, b)


def _fmt(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"
