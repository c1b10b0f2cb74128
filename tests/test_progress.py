"""The search's progress line: trials done, the best so far beside the seed recipe's (never a latest
result), the time left."""

from __future__ import annotations

import logging
import pickle
import re
from types import SimpleNamespace

import pytest
from ray.tune.experiment import Trial

import search.tuning.progress as progress_module
from search.budget import Budget
from search.tuning.progress import AFTER_SEARCH_TRIALS, SearchProgress, progress_line

METRIC = "val_accuracy"
LINE = re.compile(r"best val_accuracy (\S+) \(seed recipe (\S+)\)")

# (trial, val_accuracy) in the order the results arrive: the seed trial peaks at 0.52 then drops,
# the leader reports 0.483, 0.479, 0.444 (the FER2013 run's lines) and never beats its first epoch
RESULTS = [(0, 0.40), (1, 0.483), (0, 0.52), (1, 0.479), (0, 0.45), (1, 0.444), (2, 0.30), (0, 0.41)]


@pytest.fixture
def every_step(monkeypatch):
    monkeypatch.setattr(progress_module, "PERIOD_S", 0.0)  # a line at each step, not every 30 s


def _printed(caplog) -> list[tuple[float, float]]:
    found = [LINE.search(r.getMessage()) for r in caplog.records if r.name == "search.tuning.progress"]
    return [(float(m.group(1)), float(m.group(2))) for m in found if m]


def _feed(progress: SearchProgress, trials: list, results: list, caplog) -> list[tuple[float, float]]:
    """Hand each result to the callback as Tune's controller does: ``on_trial_result``, then the
    trial's ``last_result``, then a step's end; return the (best, seed recipe) figures printed."""
    caplog.clear()
    for step, (index, value) in enumerate(results):
        trial = trials[index]
        result = {METRIC: value, "training_iteration": step + 1, "trial_id": trial.trial_id}
        progress.on_trial_result(iteration=step, trials=trials, trial=trial, result=result)
        trial.update_last_result(result)
        progress.on_step_end(iteration=step, trials=trials)
    return _printed(caplog)


def _running_max(results: list, only: int | None = None) -> list[float]:
    best, out = float("-inf"), []
    for index, value in results:
        if only is None or index == only:
            best = max(best, value)
        out.append(best)
    return out


def test_the_best_never_goes_down_and_is_the_best_reported_so_far(tmp_path, every_step, caplog) -> None:
    caplog.set_level(logging.INFO, logger="search.tuning.progress")
    trials = [Trial("train_trial", config={"i": i}, stub=True) for i in range(3)]
    progress = SearchProgress(Budget.plan(tmp_path, None, 1.0, confirm=True), 10, METRIC, slots=2)
    progress.setup()
    printed = _feed(progress, trials, RESULTS, caplog)

    assert len(printed) == len(RESULTS)
    bests = [best for best, _ in printed]
    assert bests == sorted(bests), f"the best went down: {bests}"
    assert bests == pytest.approx(_running_max(RESULTS))
    assert bests[-1] == pytest.approx(max(v for _, v in RESULTS))  # 0.52, whatever came after it
    # the seed recipe's figure is the first trial's best so far (0.40, then 0.52 from the third result)
    seeds = [seed for _, seed in printed]
    assert seeds == pytest.approx(_running_max(RESULTS, only=0))


def test_a_resumed_callback_goes_on_from_the_trials_bests(tmp_path, every_step, caplog) -> None:
    """A resumed search unpickles the callback: the trials' reported bests are read again, so the
    line does not fall to the trials' latest results."""
    caplog.set_level(logging.INFO, logger="search.tuning.progress")
    trials = [Trial("train_trial", config={"i": i}, stub=True) for i in range(3)]
    progress = SearchProgress(Budget.plan(tmp_path, None, 1.0, confirm=True), 10, METRIC, slots=2)
    progress.setup()
    _feed(progress, trials, RESULTS[:6], caplog)

    resumed = pickle.loads(pickle.dumps(progress))
    resumed.setup()
    printed = _feed(resumed, trials, RESULTS[6:], caplog)
    assert [best for best, _ in printed] == pytest.approx([0.52, 0.52])
    assert [seed for _, seed in printed] == pytest.approx([0.52, 0.52])


def test_the_callback_keeps_each_trials_best_whatever_the_trial_object_keeps(tmp_path, every_step, caplog) -> None:
    """Trials that remember only their latest result (no metric analysis): the callback's own
    running bests, fed by ``on_trial_result``, keep the line from going down."""
    caplog.set_level(logging.INFO, logger="search.tuning.progress")

    def update(trial, result):
        trial.last_result = result

    trials = [SimpleNamespace(trial_id=f"t{i}", status="RUNNING", last_result={}) for i in range(3)]
    for trial in trials:
        trial.update_last_result = lambda result, trial=trial: update(trial, result)
    progress = SearchProgress(Budget.plan(tmp_path, None, 1.0, confirm=True), 10, METRIC, slots=2)
    progress.setup()
    printed = _feed(progress, trials, RESULTS, caplog)
    assert [best for best, _ in printed] == pytest.approx(_running_max(RESULTS))
    assert [seed for _, seed in printed] == pytest.approx(_running_max(RESULTS, only=0))


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
