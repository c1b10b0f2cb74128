"""Everything that decides what a run computes, one frozen object per stage, gathered in one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from search.confirm import ConfirmSettings
from search.final import FinalSettings
from search.tuner import SearchSettings


@dataclass(frozen=True)
class RunSettings:
    """Everything that decides what a run computes (not where it writes or which cluster it uses)."""

    search: SearchSettings = SearchSettings()
    confirm: ConfirmSettings = ConfirmSettings()
    final: FinalSettings = FinalSettings()
    time_budget_s: Optional[float] = None  # the whole run's, shared by the stages (search.budget)
