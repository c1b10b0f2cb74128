"""The search's sampler: a random start of two fifths of the trials (or, under a time
budget, of its time, whichever ends first), then Optuna's TPE."""

from __future__ import annotations

import json
import time
from pathlib import Path

import optuna
import pytest

from search.budget import Budget
from search.settings import STARTUP_SHARE, SearchSettings
from search.tuning.sampler import STARTUP_FLOOR, StartupSampler
from search.tuning.tuner import build_searcher

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _set(budget: Budget, **values) -> None:
    """Change the budget's file as another process (the driver of a resumed run) would."""
    budget.path.write_text(json.dumps(json.loads(budget.path.read_text()) | values))


def _search_budget(folder: Path, search_s: float) -> Budget:
    """A search's budget of ``search_s`` seconds, its attempt started now."""
    folder.mkdir(parents=True, exist_ok=True)
    budget = Budget.search_only(folder, search_s)
    budget.start_search()
    return budget


def test_random_start_is_two_fifths_of_the_search_up_to_20() -> None:
    def startup(n: int) -> int:
        return SearchSettings(trials=n).startup_trials

    assert [startup(n) for n in (1, 2, 3, 10, 25, 50, 100)] == [1, 1, 1, 4, 10, 20, 20]
    assert all(1 <= startup(n) <= max(1, n) for n in range(1, 200))


def test_the_search_uses_it_and_a_time_budget_also_bounds_it_in_time(tmp_path: Path) -> None:
    for trials in (5, 50):
        searcher = build_searcher(SearchSettings(trials=trials, seed=3))
        assert isinstance(searcher._sampler, StartupSampler)
        assert searcher._sampler.n_startup == SearchSettings(trials=trials).startup_trials
        assert searcher._sampler.budget is None and searcher.budget is None
    before = time.time()
    budget = _search_budget(tmp_path, 500.0)
    searcher = build_searcher(SearchSettings(trials=1000, seed=3), budget=budget)
    assert searcher._sampler.n_startup == 20 and searcher._sampler.budget is budget
    assert before + 500 * STARTUP_SHARE <= budget.random_start_end() <= time.time() + 500 * STARTUP_SHARE
    # no trial once the deadline the driver set has passed; one before it
    _set(budget, search_deadline=time.time() - 1)
    assert searcher.suggest("late") == searcher.FINISHED
    _set(budget, search_deadline=time.time() + 60)
    from search.tuning.space import seed_point

    first = searcher.suggest("early")  # the first trial: the seed's recipe, with the space's constants
    assert {k: first[k] for k in seed_point()} == seed_point()


def test_sampler_tpe_is_optunas_own_with_its_defaults(tmp_path: Path) -> None:
    searcher = build_searcher(SearchSettings(trials=50, sampler="tpe", seed=3), budget=_search_budget(tmp_path, 500.0))
    sampler = searcher._sampler
    assert type(sampler) is optuna.samplers.TPESampler
    assert sampler._n_startup_trials == 10 and not sampler._multivariate
    # seeded: the same first random draws as a TPESampler built at the same seed
    assert _params(_study(sampler, 3), 3) == _params(_study(optuna.samplers.TPESampler(seed=3), 3), 3)


def _objective(trial: optuna.Trial) -> float:  # best at x = 0.8, with a conditional parameter
    x = trial.suggest_float("x", 0.0, 1.0)
    if trial.suggest_categorical("deep", [False, True]):
        x += 0.01 * trial.suggest_int("depth", 1, 3)
    return -(x - 0.8) ** 2


def _study(sampler: optuna.samplers.BaseSampler, trials: int) -> optuna.Study:
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(_objective, n_trials=trials)
    return study


def _params(study: optuna.Study, upto: int) -> list[dict]:
    return [t.params for t in study.trials[:upto]]


def test_the_count_ends_the_start_and_tpe_then_homes_in() -> None:
    sampler = StartupSampler(n_startup=8, seed=5, multivariate=True, group=True)
    study = _study(sampler, 40)
    # the first 8 trials are exactly a random sampler's at the seed, the rest TPE's
    assert _params(study, 8) == _params(_study(optuna.samplers.RandomSampler(seed=5), 8), 8)
    assert sampler.ended_by == "trials" and sampler._random_trials == set(range(8))
    tpe_gap = sorted(abs(t.params["x"] - 0.8) for t in study.trials[8:])
    random_gap = sorted(abs(t.params["x"] - 0.8) for t in _study(optuna.samplers.RandomSampler(seed=6), 40).trials[8:])
    assert tpe_gap[len(tpe_gap) // 2] < random_gap[len(random_gap) // 2] / 2  # TPE's median gap: under half random's


def test_without_a_clock_it_samples_exactly_as_optunas_tpe_with_its_random_start(tmp_path: Path) -> None:
    """A search bounded by --trials alone draws the same trials as before the clock existed; so does
    one whose budget has no bound."""
    tpe = _study(optuna.samplers.TPESampler(n_startup_trials=8, seed=5, multivariate=True, group=True), 30)
    ours = _study(StartupSampler(n_startup=8, seed=5, multivariate=True, group=True), 30)
    assert _params(ours, 30) == _params(tpe, 30)
    unbounded = Budget.plan(tmp_path, None, startup_s=1.0, confirm=True)
    unbounded.start_search()
    assert _params(_study(StartupSampler(n_startup=8, budget=unbounded, seed=5, multivariate=True, group=True),
                          30), 30) == _params(tpe, 30)


def test_the_clock_ends_the_start_once_tpe_has_a_few_trials(tmp_path: Path) -> None:
    over = _search_budget(tmp_path / "over", 0.0)  # a random start with no time at all
    past = StartupSampler(n_startup=20, budget=over, seed=5, multivariate=True, group=True)
    _study(past, 12)
    assert past.ended_by == "time" and past._random_trials == set(range(STARTUP_FLOOR))

    long = _search_budget(tmp_path / "long", 7200.0)
    future = StartupSampler(n_startup=6, budget=long, seed=5, multivariate=True, group=True)
    _study(future, 12)
    assert future.ended_by == "trials" and future._random_trials == set(range(6))

    short = StartupSampler(n_startup=3, budget=over, seed=5)  # fewer than the floor: the count rules
    _study(short, 6)
    assert short.ended_by == "trials" and short._random_trials == set(range(3))


def test_a_trial_ends_in_the_phase_it_started_in(tmp_path: Path) -> None:
    """The clock passing mid-trial does not mix the two samplers in one trial's parameters."""
    budget = _search_budget(tmp_path, 7200.0)
    sampler = StartupSampler(n_startup=20, budget=budget, seed=5, multivariate=True, group=True)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for _ in range(STARTUP_FLOOR):
        study.tell(trial := study.ask(), _objective(trial))
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)
    _set(budget, random_until=time.time() - 1)  # the start's time runs out while this trial is being sampled
    trial.suggest_categorical("deep", [False, True])
    assert trial.number in sampler._random_trials and sampler.ended_by is None
    study.tell(trial, -1.0)
    assert study.ask().number not in sampler._random_trials and sampler.ended_by == "time"


def test_it_survives_pickling_as_tune_checkpoints_the_searcher() -> None:
    import pickle

    sampler = StartupSampler(n_startup=3, seed=5, multivariate=True, group=True)
    study = _study(sampler, 5)
    restored = pickle.loads(pickle.dumps(sampler))
    assert restored.ended_by == "trials" and restored._random_trials == {0, 1, 2}
    study.sampler = restored
    study.optimize(_objective, n_trials=2)
    assert len(study.trials) == 7 and restored._random_trials == {0, 1, 2}


@pytest.mark.parametrize("n_startup", [1, 4])
def test_tpe_after_a_start_of_any_length_samples_the_whole_space(n_startup: int) -> None:
    study = _study(StartupSampler(n_startup=n_startup, seed=1, multivariate=True, group=True), 15)
    assert all(0.0 <= t.params["x"] <= 1.0 and t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


def test_a_restored_sampler_keeps_to_the_random_start_of_the_current_attempt(tmp_path: Path) -> None:
    """Tune restores the sampler from its saved state on --resume: it reads the random start's end
    from the run's budget, which the resumed attempt set anew, not one it kept."""
    import pickle

    budget = _search_budget(tmp_path, 7200.0)
    sampler = StartupSampler(n_startup=20, budget=budget, seed=5)
    study = _study(sampler, 8)
    assert sampler.ended_by is None and sampler._random_trials == set(range(8))
    restored = pickle.loads(pickle.dumps(sampler))
    # the interrupted attempt spent more than the random start's share of the search
    _set(budget, search_spent_s=0.5 * 7200)
    assert Budget.load(tmp_path).start_search() == pytest.approx(0.5 * 7200, abs=1.0)
    study.sampler = restored
    study.optimize(_objective, n_trials=1)
    assert restored.ended_by == "time" and 8 not in restored._random_trials


@pytest.mark.parametrize("spent, left", [(0.0, 500 * STARTUP_SHARE), (100.0, 500 * STARTUP_SHARE - 100),
                                         (300.0, 0.0)])
def test_a_resumed_search_keeps_what_was_left_of_its_random_start(tmp_path: Path, spent: float,
                                                                  left: float) -> None:
    """The random start is the first two fifths of the search's share: an attempt after ``spent``
    seconds of earlier ones has what is left of it, none once they spent it all."""
    first = Budget.search_only(tmp_path, 500.0)
    _set(first, search_spent_s=spent)
    resumed = Budget.load(tmp_path)
    resumed.start_search()
    assert resumed.random_start_end() - time.time() == pytest.approx(left, abs=1.0)
