"""The search's progress line: trials done, the best so far beside the seed recipe's, the time left."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from search.budget import Budget
from search.tuning.progress import AFTER_SEARCH_TRIALS, SearchProgress, progress_line


def test_progress_line_names_done_best_seed_and_time_left() -> None:
    def trial(status: str, value):
        return SimpleNamespace(status=status, last_result={"val_accuracy": value} if value is not None else {})

    trials = [trial("TERMINATED", 0.52), trial("TERMINATED", 0.86), trial("RUNNING", 0.7), trial("PENDING", None)]
    line = progress_line(trials, 50, "val_accuracy", 380.0)
    assert line == "2/50 trials done; best val_accuracy 0.860 (seed recipe 0.520); about 6 min left"
    assert progress_line([], 50, "val_accuracy", None).endswith("time left not known yet")


def test_time_left_is_the_budgets_whether_or_not_the_run_has_a_plan(tmp_path) -> None:
    """With a deadline the line counts down the budget, the stages after the search included; a
    search without a bound estimates from the trials' times (1000 trials: hours)."""
    done = [SimpleNamespace(status="TERMINATED", last_result={"time_total_s": 60.0}) for _ in range(3)]
    unbounded = Budget.plan(tmp_path, None, startup_s=1.0, confirm=True)
    progress = SearchProgress(unbounded, 1000, "val_accuracy", slots=2)
    assert progress.seconds_left(done) == pytest.approx((1000 - 3 + AFTER_SEARCH_TRIALS) * 60.0 / 2)
    (tmp_path / "b").mkdir(), (tmp_path / "c").mkdir()
    harness = Budget.search_only(tmp_path / "b", 300.0)
    harness.start_search()
    assert 295.0 <= SearchProgress(harness, 1000, "val_accuracy", slots=2).seconds_left(done) <= 300.0
    run = Budget.plan(tmp_path / "c", 1000.0, startup_s=0.0, confirm=True)
    run.start_search()
    shares = run.shares
    left = SearchProgress(run, 50, "val_accuracy", slots=2).seconds_left(done)
    assert left == pytest.approx(shares.search_s + shares.confirm_s + shares.final_s, abs=2.0)
