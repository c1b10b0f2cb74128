"""A searcher wrapper that honours ``--time-budget``: no new trials once the time is up.

Tune's own ``time_budget_s`` stops running trials too; a user who gives a budget wants
the trials already started to finish, and the search to end cleanly with a report.
"""

from __future__ import annotations

import time
from typing import Optional

from ray.tune.search.optuna import OptunaSearch


class BudgetedOptunaSearch(OptunaSearch):
    """:class:`OptunaSearch` that answers ``FINISHED`` after ``deadline`` (a Unix time)."""

    def __init__(self, *args, deadline: Optional[float] = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.deadline = deadline

    def suggest(self, trial_id: str):
        if self.deadline is not None and time.time() > self.deadline:
            return OptunaSearch.FINISHED
        return super().suggest(trial_id)
