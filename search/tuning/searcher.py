"""The searcher: Ray Tune's Optuna search, as FER Tune runs it.

It suggests no trial once the run's search deadline (:class:`search.budget.Budget`) has passed, and
with a cost weight (``--cost-weight``) it tells Optuna each trial's score less its cost
(:func:`search.tuning.cost.cost_adjusted`), so that TPE weighs a config's accuracy against its
time. The cost is a trial's median epoch time; it is compared with the first trial's, the
seed recipe's, or, until that one has reported, with the median trial's. Ray's scheduler
and the reports see the score alone.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
from ray.tune.search.optuna import OptunaSearch

from search.budget import Budget
from search.records import row_seconds
from search.tuning.cost import cost_adjusted


class BudgetedOptunaSearch(OptunaSearch):
    """:class:`OptunaSearch` that answers ``FINISHED`` once the ``budget``'s search deadline has
    passed and, with ``cost_weight``, tells Optuna scores weighed against the trials' epoch times
    (``faces``: the validation faces a score is measured on)."""

    # class defaults: a searcher saved before these existed restores with them (Ray pickles __dict__)
    cost_weight = 0.0
    faces = 0
    first_trial: Optional[str] = None

    def __init__(self, *args, budget: Optional[Budget] = None, cost_weight: float = 0.0, faces: int = 0,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.budget = budget
        self.cost_weight = cost_weight
        self.faces = faces
        self.epoch_times: dict[str, list[float]] = {}

    def suggest(self, trial_id: str):
        if self.budget is not None and self.budget.search_over():
            return OptunaSearch.FINISHED
        suggestion = super().suggest(trial_id)
        if self.first_trial is None and isinstance(suggestion, dict):
            self.first_trial = trial_id
        return suggestion

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        seconds = row_seconds(result)
        if math.isfinite(seconds):
            self._epoch_times().setdefault(trial_id, []).append(seconds)
        super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: Optional[dict] = None, error: bool = False) -> None:
        if result and self.cost_weight > 0 and isinstance(result.get(self.metric), (int, float)):
            result = {**result, self.metric: self.told(trial_id, result[self.metric])}
        super().on_trial_complete(trial_id, result, error)

    def cost(self, trial_id: Optional[str]) -> float:
        """A trial's median epoch time so far; 0 when it has reported none."""
        times = self._epoch_times().get(trial_id)
        return float(np.median(times)) if times else 0.0

    def told(self, trial_id: str, score: float) -> float:
        """What Optuna is told for ``score``: less the trial's cost against the seed recipe's."""
        reference = self.cost(self.first_trial)
        if reference <= 0:
            known = [c for c in map(self.cost, self._epoch_times()) if c > 0]
            reference = float(np.median(known)) if known else 0.0
        return cost_adjusted(score, self.cost(trial_id), reference, self.faces, self.cost_weight)

    def _epoch_times(self) -> dict[str, list[float]]:
        """Each trial's epoch times; a searcher pickled before they were kept starts them empty."""
        return self.__dict__.setdefault("epoch_times", {})
