"""The time budget: shares that never exceed it, deadlines that survive a resume in one file, a
budget too short for one trial refused before Ray starts."""

from __future__ import annotations

import json
import math
import pickle
import time
from pathlib import Path

import pytest

from fer_core.errors import ConfigError
from search.budget import (BUDGET_FILE, EXPORT_ALLOWANCE_S, MIN_SEARCH_S, Budget, BudgetPlan, check_budget,
                           makespan)
from search.rundir import write_state
from search.settings import STARTUP_SHARE


@pytest.mark.parametrize("total, startup", [(90, 4), (600, 25), (3600, 60), (20, 5)])
@pytest.mark.parametrize("confirm", [True, False])
def test_the_plan_never_exceeds_the_budget(total: float, startup: float, confirm: bool) -> None:
    plan = BudgetPlan.of(total, startup, confirm)
    stages = plan.search_s + plan.confirm_s + plan.final_s
    assert stages <= total - startup - EXPORT_ALLOWANCE_S + 1e-9 or stages == 0
    assert plan.search_s >= 0 and plan.final_s >= 0
    assert (plan.confirm_s > 0) == (confirm and stages > 0)
    # without a confirmation its share goes to the search
    assert BudgetPlan.of(total, startup, False).search_s >= BudgetPlan.of(total, startup, True).search_s


def test_makespan_runs_tasks_in_order_slots_at_a_time() -> None:
    assert makespan([10, 10, 10, 10], 2) == 20
    assert makespan([30, 10, 10, 10], 2) == 30
    assert makespan([5], 4) == 5 and makespan([], 2) == 0


def test_an_unbounded_budget_answers_infinity_to_every_stage(tmp_path: Path) -> None:
    budget = Budget.plan(tmp_path, None, startup_s=3.0, confirm=True)
    assert budget.shares is None and budget.total_s is None
    assert budget.start_search() == math.inf
    assert budget.search_deadline() == budget.random_start_end() == budget.confirm_deadline() == math.inf
    assert not budget.search_over() and budget.final_seconds() == math.inf and budget.after_search_s() == 0


def test_the_search_deadline_and_random_start_come_from_the_share(tmp_path: Path) -> None:
    budget = Budget.plan(tmp_path, 600.0, startup_s=10.0, confirm=True)
    search_s = budget.shares.search_s
    before = time.time()
    assert budget.start_search() == pytest.approx(search_s)
    assert before + search_s <= budget.search_deadline() <= time.time() + search_s
    assert budget.random_start_end() == pytest.approx(budget.search_deadline() - (1 - STARTUP_SHARE) * search_s,
                                                      abs=1e-6)
    assert 0 < budget.confirm_deadline() - time.time() <= budget.shares.confirm_s


def test_a_resumed_run_goes_on_with_what_its_earlier_attempts_left(tmp_path: Path) -> None:
    """The search time spent is saved as it goes; a new attempt's deadline and random start are what
    is left of the share, and the final stage gets what the search and the confirmation left."""
    budget = Budget.plan(tmp_path, 600.0, startup_s=10.0, confirm=True)
    shares = budget.shares
    budget.start_search()
    state = json.loads((tmp_path / BUDGET_FILE).read_text())
    state["search_started"] -= 100.0  # the first attempt searched for 100 s, then was killed
    (tmp_path / BUDGET_FILE).write_text(json.dumps(state))
    assert budget.note_search_time() == pytest.approx(100.0, abs=1.0)
    resumed = Budget.load(tmp_path)
    assert resumed.search_spent_s == pytest.approx(100.0, abs=1.0)
    assert resumed.start_search() == pytest.approx(shares.search_s - 100.0, abs=1.0)
    # the random start is the share's first two fifths: 100 s of it were spent
    assert resumed.random_start_end() - time.time() == pytest.approx(STARTUP_SHARE * shares.search_s - 100.0,
                                                                      abs=1.0)
    resumed.note_search_time()
    # the confirmation, killed after 30 s, then done in 20 s: both attempts count
    resumed.note_confirm_time(30.0)
    Budget.load(tmp_path).note_confirm_time(20.0)
    assert Budget.load(tmp_path).final_seconds() == pytest.approx(
        shares.final_s + shares.confirm_s + shares.search_s - 100 - 50, abs=1.0)


def test_the_final_stage_is_planned_once_so_a_resumed_run_plans_it_alike(tmp_path: Path) -> None:
    """The final stage's seconds and the machine's pace, once known, are what a resumed attempt
    gets, whatever the attempts spent since: its plan names the configs whose states it saved."""
    budget = Budget.plan(tmp_path, 600.0, startup_s=10.0, confirm=True)
    shares = budget.shares
    budget.note_confirm_time(shares.confirm_s)
    seconds = budget.final_seconds()
    assert seconds == pytest.approx(shares.final_s + shares.search_s)  # the search spent nothing
    assert budget.seed_pace(lambda: 812.5) == 812.5
    resumed = Budget.load(tmp_path)
    resumed.note_confirm_time(100.0)  # a resumed attempt's confirmation, all saved, still takes a while
    assert resumed.final_seconds() == seconds
    assert resumed.seed_pace(lambda: 400.0) == 812.5
    # stages that overran their shares leave the final stage nothing, not less
    (tmp_path / "o").mkdir()
    overran = Budget.plan(tmp_path / "o", 600.0, startup_s=10.0, confirm=True)
    overran.note_confirm_time(10 * shares.final_s + shares.search_s)
    assert overran.final_seconds() == 0.0


def test_a_pickled_copy_sees_the_deadline_of_the_current_attempt(tmp_path: Path) -> None:
    """Tune restores the sampler, searcher and stopper from its saved state on --resume: they must
    read the deadline the new attempt set, not one they kept."""
    budget = Budget.plan(tmp_path, 600.0, startup_s=10.0, confirm=False)
    copy = pickle.loads(pickle.dumps(budget))
    budget.start_search()
    assert copy.search_deadline() == budget.search_deadline() < math.inf
    state = json.loads((tmp_path / BUDGET_FILE).read_text())
    (tmp_path / BUDGET_FILE).write_text(json.dumps(state | {"search_deadline": time.time() - 1}))
    assert copy.search_over()


def test_a_run_saved_before_the_budget_file_resumes_with_its_plan(tmp_path: Path) -> None:
    plan = BudgetPlan.of(600.0, 10.0, confirm=True).to_json()
    write_state(tmp_path, {"args": {}, "fingerprint": "x", "search_seconds": 50.0, "plan": plan})
    budget = Budget.load(tmp_path)
    assert budget.shares == BudgetPlan(**plan) and budget.search_spent_s == 50.0


def test_a_budget_too_short_for_one_trial_is_refused_naming_the_least_that_would() -> None:
    check_budget(None, 4.0, confirm=True)
    check_budget(90.0, 4.0, confirm=True)
    with pytest.raises(ConfigError) as error:
        check_budget(1.0, 4.0, confirm=True)
    least = int(str(error.value).rsplit("at least ", 1)[1].rstrip("s"))
    assert str(error.value).startswith("--time-budget 1s: too short to train one trial")
    check_budget(float(least), 4.0, confirm=True)  # the least it names is enough ...
    assert BudgetPlan.of(least, 4.0, True).search_s >= MIN_SEARCH_S
    with pytest.raises(ConfigError):  # ... and a second less is not
        check_budget(least - 1.0, 4.0, confirm=True)
