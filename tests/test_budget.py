"""The time budget's plan: shares that never exceed it, a final stage sized to its share, progress lines."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from search.budget import EXPORT_ALLOWANCE_S, BudgetPlan, epoch_seconds, makespan
from search.final import FinalSettings, plan_final
from search.deadline import write_deadline
from search.progress import SearchProgress, progress_line
from search.rundir import write_state
from search.space import seed_point


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


def _trial(trial_id: str, seconds: float, epochs: int = 4, **config) -> dict:
    return {"trial_id": trial_id, "config": {**seed_point(), "epochs": epochs, **config},
            "history": [{"train_seconds": seconds, "val_seconds": 0.0}] * 3}


def test_epoch_seconds_is_the_median_of_the_trials_epochs() -> None:
    trial = {"history": [{"train_seconds": 1.0, "val_seconds": 0.5}, {"train_seconds": 9.0},
                         {"train_seconds": 2.0, "val_seconds": 0.5}, {"train_seconds": float("nan")}]}
    assert epoch_seconds(trial) == 2.5 and epoch_seconds({"history": []}) == 0.0


def test_the_final_stage_shrinks_to_its_share_epochs_first_then_members() -> None:
    seed = _trial("seed", 1.0, epochs=16)
    members = [_trial(f"m{i}", 2.0, dense_units=128 + i) for i in range(5)]
    trials = [seed, *members]
    default = FinalSettings()
    # each member: 4 epochs x 3 x 2 s (+ overhead) on as many faces as its trial saw
    planned, estimate = plan_final(trials, members, default, n_rest=100, n_train=100, slots=2, seconds=None)
    assert planned == default and estimate > 0
    generous, _ = plan_final(trials, members, default, 100, 100, 2, seconds=estimate)
    assert generous == default
    tighter, cost = plan_final(trials, members, default, 100, 100, 2, seconds=estimate * 0.85)
    assert (tighter.ensemble, tighter.epochs_scale) == (5, 2.0) and cost <= estimate * 0.85
    tight, cost = plan_final(trials, members, default, 100, 100, 2, seconds=estimate * 0.45)
    assert tight.ensemble < 5 and cost <= estimate * 0.45
    # one member for the share of its trial's epochs that fits; at least one epoch, whatever the budget
    short, cost = plan_final(trials, members, default, 100, 100, 2, seconds=15.0)
    assert short.ensemble == 1 and short.epochs_scale < 1.0 and cost <= 15.0
    hopeless, _ = plan_final(trials, members, default, 100, 100, 2, seconds=1.0)
    assert hopeless.ensemble == 1 and hopeless.epochs_scale < 1.0


def test_progress_line_names_done_best_seed_and_time_left() -> None:
    def trial(status: str, value):
        return SimpleNamespace(status=status, last_result={"val_accuracy": value} if value is not None else {})

    trials = [trial("TERMINATED", 0.52), trial("TERMINATED", 0.86), trial("RUNNING", 0.7), trial("PENDING", None)]
    line = progress_line(trials, 50, "val_accuracy", 380.0)
    assert line == "2/50 trials done; best val_accuracy 0.860 (seed recipe 0.520); about 6 min left"
    assert progress_line([], 50, "val_accuracy", None).endswith("time left not known yet")


def test_time_left_is_the_budgets_whether_or_not_the_run_has_a_plan(tmp_path) -> None:
    """With a deadline the line counts down the budget; a harness without run.json gets the search's
    time left, not an estimate from the trial count (1000 trials: hours)."""
    done = [SimpleNamespace(status="TERMINATED", last_result={"time_total_s": 60.0}) for _ in range(3)]
    progress = SearchProgress(tmp_path, 1000, "val_accuracy", slots=2)
    progress.setup()
    assert progress.seconds_left(done) == pytest.approx((1000 - 3 + 33) * 60.0 / 2)  # no deadline: the trials'
    write_deadline(tmp_path, time.time() + 300.0)
    progress.setup()
    assert 295.0 <= progress.seconds_left(done) <= 300.0
    write_state(tmp_path, {"plan": {"search_s": 300.0, "confirm_s": 120.0, "final_s": 180.0}})
    progress.setup()
    assert 595.0 <= progress.seconds_left(done) <= 600.0


def test_a_seed_recipe_too_long_for_the_share_trains_fewer_of_its_epochs() -> None:
    seed = _trial("seed", 10.0, epochs=16)  # 20 epochs of 10 s: 200 s alone
    members = [_trial("m0", 1.0)]
    planned, cost = plan_final([seed, *members], members, FinalSettings(), 100, 100, slots=2, seconds=100.0)
    assert planned.seed_epochs is not None and 1 <= planned.seed_epochs < 20 and cost <= 100.0
    unbounded, _ = plan_final([seed, *members], members, FinalSettings(), 100, 100, slots=2, seconds=None)
    assert unbounded.seed_epochs is None


def test_trials_that_measured_no_epoch_do_not_pull_the_typical_epoch_time_down() -> None:
    """Without a seed trial (a fine-tuning search, say) the seed's recipe is costed at the typical
    epoch time of the trials that measured one; failed ones measured nothing."""
    members = [_trial("m0", 3.0, dense_units=200), _trial("m1", 3.0, dense_units=201)]
    failed = [{"trial_id": f"f{i}", "config": {"dense_units": 300 + i}, "history": []} for i in range(5)]
    alone, cost_alone = plan_final(members, members[:1], FinalSettings(ensemble=1), 100, 100, slots=1, seconds=None)
    with_failed, cost = plan_final([*members, *failed], members[:1], FinalSettings(ensemble=1), 100, 100, slots=1,
                                   seconds=None)
    assert cost == cost_alone and cost >= 20 * 3.0  # the seed's 20 epochs at the typical 3 s


def test_the_final_stage_gets_what_the_search_and_confirmation_left() -> None:
    plan = BudgetPlan.of(3600.0, 6.0, confirm=True)
    assert plan.final_left(plan.search_s, plan.confirm_s) == pytest.approx(plan.final_s)  # as planned
    # a confirmation skipped for want of time leaves its share to the final model
    assert plan.final_left(plan.search_s, 0.0) == pytest.approx(plan.final_s + plan.confirm_s)
    # a search that overran by one epoch takes it from there
    assert plan.final_left(plan.search_s + 90, plan.confirm_s) == pytest.approx(plan.final_s - 90)
    assert plan.final_left(10 * plan.search_s, plan.confirm_s) == 0.0


def test_a_training_in_rounds_costs_the_same_on_more_faces_and_one_in_passes_more() -> None:
    """The confirmation's folds and the final model train on more faces than the trial did: a
    pass over them takes longer, a round of a large data set's faces does not."""
    from search.budget import TASK_OVERHEAD_S, image_seconds
    from search.confirm import estimated_seconds

    history = [{"train_seconds": 10.0, "val_seconds": 0.0}] * 3
    passes = {"trial_id": "p", "config": {**seed_point(), "epochs": 16}, "history": history}
    rounds = {"trial_id": "r", "config": {**seed_point(), "epochs": 57, "round_images": 8192}, "history": history}
    assert image_seconds(passes, 20000) == pytest.approx(10 / 20000)
    assert image_seconds(rounds, 20000) == pytest.approx(10 / 8192)
    # a 3-fold confirmation over 30,000 faces: folds of 20,000
    assert estimated_seconds(passes, 3, 30000, 10000) == pytest.approx(16 * 20.0 + TASK_OVERHEAD_S)
    assert estimated_seconds(rounds, 3, 30000, 10000) == pytest.approx(57 * 10.0 + TASK_OVERHEAD_S)
    # the final model on twice the faces: the member in rounds costs the same, the seed's recipe (in passes) twice
    settings = FinalSettings(ensemble=1, epochs_scale=1.0, inputs=("standardize",))
    _, small = plan_final([passes, rounds], [rounds], settings, n_rest=20000, n_train=20000, slots=1, seconds=None)
    _, large = plan_final([passes, rounds], [rounds], settings, n_rest=40000, n_train=20000, slots=1, seconds=None)
    seed_recipe_s = 20 * 10.0  # its 20 epochs at the seed trial's 10 s a pass of 20,000
    assert small == pytest.approx(57 * 10.0 + seed_recipe_s + 2 * TASK_OVERHEAD_S)
    assert large == pytest.approx(57 * 10.0 + 2 * seed_recipe_s + 2 * TASK_OVERHEAD_S)
