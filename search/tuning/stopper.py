"""The search's deadline as Tune sees it: a stopper that ends running trials once it has passed.

The trial keeps what it reported; it is recorded as stopped early, as the scheduler's are.
The deadline is the run's :class:`search.budget.Budget`'s, read at each result, so a
resumed search (whose stopper Tune restores from its saved state) keeps to the current one.
"""

from __future__ import annotations

from ray.tune import Stopper

from search.budget import Budget


class DeadlineStopper(Stopper):
    """Stops a running trial at its first result after the budget's search deadline."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget

    def __call__(self, trial_id: str, result: dict) -> bool:
        return self.budget.search_over()

    def stop_all(self) -> bool:
        return False
