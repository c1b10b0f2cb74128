"""Everything that decides what a run computes, one frozen object per stage, gathered in one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from search.confirm import ConfirmSettings
from search.final import FinalSettings
from search.space import is_large
from search.tuner import SearchSettings


@dataclass(frozen=True)
class RunSettings:
    """Everything that decides what a run computes (not where it writes or which cluster it uses)."""

    search: SearchSettings = SearchSettings()
    confirm: ConfirmSettings = ConfirmSettings()
    final: FinalSettings = FinalSettings()
    time_budget_s: Optional[float] = None  # the whole run's, shared by the stages (search.budget)
    # the budget of a run without --time-budget on a small data set (search.cli.SMALL_DATA_BUDGET)
    small_data_budget_s: Optional[float] = None

    def budget_for(self, n_train: int) -> Optional[float]:
        """The run's time budget on ``n_train`` training faces: the one given, else the small data
        set's default below :data:`search.space.LARGE_DATA` faces, else none."""
        if self.time_budget_s is not None or is_large(n_train):
            return self.time_budget_s
        return self.small_data_budget_s
