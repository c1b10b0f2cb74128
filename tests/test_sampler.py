"""The search's sampler: Optuna TPE after a random start of two fifths of the trials."""

from __future__ import annotations

from search.run import build_searcher, parse_args, startup_trials


def test_random_start_is_two_fifths_of_the_search_up_to_20() -> None:
    assert [startup_trials(n) for n in (1, 2, 3, 10, 25, 50, 100)] == [1, 1, 1, 4, 10, 20, 20]
    assert all(1 <= startup_trials(n) <= max(1, n) for n in range(1, 200))


def test_the_search_uses_it() -> None:
    for trials in (5, 50):
        searcher = build_searcher(parse_args(["--trials", str(trials), "--seed", "3"]), budget_s=None)
        assert searcher._sampler._n_startup_trials == startup_trials(trials)
