"""Early stopping against the recent trials: Ray's ASHA bracket bookkeeping, another cutoff."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from ray.tune.schedulers import TrialScheduler

from search.settings import SearchSettings
from search.tuning.scheduler import RecentASHAScheduler


def _scheduler(**overrides) -> RecentASHAScheduler:
    kwargs = dict(metric="val_accuracy", mode="max", max_t=20, grace_period=4, reduction_factor=3, window=3,
                  keep=0.25)
    return RecentASHAScheduler(**{**kwargs, **overrides})


def _judge(bracket, trial_id: str, epoch: int, value: float) -> str:
    return bracket.on_result(SimpleNamespace(trial_id=trial_id), epoch, value)


def test_rungs_are_ashas() -> None:
    assert _scheduler().rungs == [4, 12]
    assert _scheduler(max_t=40, grace_period=2).rungs == [2, 6, 18]


def test_a_trial_is_judged_against_the_recent_trials_only() -> None:
    """Early poor trials no longer wave a mediocre one through once the search has improved."""
    from ray.tune.schedulers.async_hyperband import _Bracket

    recent = _scheduler()._brackets[0]
    plain = _Bracket(4, 20, 3, s=0)
    history = [0.1, 0.15, 0.2, 0.25, 0.8, 0.85, 0.9]  # random start-up, then the sampler's good region
    for i, value in enumerate(history):
        _judge(recent, f"t{i}", 4, value)
        _judge(plain, f"t{i}", 4, value)
    # 0.82 beats two thirds of everything so far (ASHA goes on) but not the best quarter of the last 3
    assert _judge(plain, "new", 4, 0.82) == TrialScheduler.CONTINUE
    assert _judge(recent, "new", 4, 0.82) == TrialScheduler.STOP
    assert recent.cutoff(recent._rungs[-1][1]) == pytest.approx(0.875)  # 75th percentile of 0.85, 0.9, 0.82
    assert _judge(recent, "good", 4, 0.95) == TrialScheduler.CONTINUE
    # between rungs nothing is judged; the next rung judges again
    assert _judge(recent, "good", 5, 0.0) == TrialScheduler.CONTINUE
    assert _judge(recent, "good", 12, 0.9) == TrialScheduler.CONTINUE  # first at its rung


def test_the_first_trials_at_a_rung_are_judged_against_those_there_are() -> None:
    bracket = _scheduler(window=9)._brackets[0]
    assert _judge(bracket, "a", 4, 0.5) == TrialScheduler.CONTINUE  # nobody to compare with
    assert _judge(bracket, "b", 4, 0.4) == TrialScheduler.STOP
    assert _judge(bracket, "c", 4, 0.6) == TrialScheduler.CONTINUE


def test_a_trial_below_the_floor_stops_even_first_at_its_rung() -> None:
    """ASHA lets the first result at a rung on; one worse than answering the majority class is not."""
    bracket = _scheduler(window=9, floor=0.25)._brackets[0]
    assert _judge(bracket, "disgust-only", 4, 0.016) == TrialScheduler.STOP  # first at its rung
    assert _judge(bracket, "majority", 4, 0.25) == TrialScheduler.CONTINUE  # not below: it may still learn
    assert _judge(bracket, "learning", 12, 0.3) == TrialScheduler.CONTINUE  # first at the next rung
    assert _judge(bracket, "lost", 12, 0.2) == TrialScheduler.STOP
    # a rung of poor results: the percentile falls below the floor, the floor holds
    bracket = _scheduler(window=9, floor=0.25)._brackets[0]
    for i, value in enumerate([0.25, 0.1, 0.1, 0.1]):
        _judge(bracket, f"t{i}", 4, value)
    assert bracket.cutoff(bracket._rungs[-1][1]) == 0.25
    without = _scheduler(window=9)._brackets[0]
    assert _judge(without, "disgust-only", 4, 0.016) == TrialScheduler.CONTINUE  # ASHA's own rule


def test_the_search_holds_trials_to_the_constant_answer() -> None:
    from search.tuning.tuner import build_scheduler

    assert build_scheduler(SearchSettings(), floor=0.249)._brackets[0].floor == 0.249
    with pytest.raises(ValueError, match="mode 'min'"):
        _scheduler(mode="min", floor=0.1)


@pytest.mark.parametrize("max_epochs", [16, 30])
def test_hyperband_has_the_brackets_of_optunas_pruner(max_epochs: int) -> None:
    """--scheduler hyperband judges at the epochs Optuna's HyperbandPruner does in the Optuna-alone arm."""
    import optuna

    from experiments.tuner_arms import hyperband_pruner
    from search.tuning.tuner import build_scheduler

    scheduler = build_scheduler(SearchSettings(scheduler="hyperband", max_epochs=max_epochs))
    ray_rungs = [sorted(int(milestone) for milestone, _ in bracket._rungs) for bracket in scheduler._brackets]
    pruner = hyperband_pruner(max_epochs)  # the Optuna-alone arm's own
    pruner._try_initialization(optuna.create_study())
    optuna_rungs = []
    for bracket in pruner._pruners:  # Optuna's successive halving: rung k at min_resource * rf^(rate + k)
        rungs = (bracket._min_resource * bracket._reduction_factor ** (bracket._min_early_stopping_rate + k)
                 for k in range(max_epochs))
        optuna_rungs.append([rung for rung in rungs if rung < max_epochs])
    assert ray_rungs == optuna_rungs
    assert ray_rungs[0] == [1, 3, 9] + ([27] if max_epochs > 27 else [])


@pytest.mark.parametrize("overrides, expected", [({"window": 0}, "window 0"), ({"keep": 0.0}, "keep 0.0"),
                                                 ({"keep": 1.5}, "keep 1.5")])
def test_bad_settings_are_refused(overrides: dict, expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        _scheduler(**overrides)


def test_none_lets_every_trial_run_its_epochs() -> None:
    from search.tuning.tuner import build_scheduler

    scheduler = build_scheduler(SearchSettings(scheduler="none", max_epochs=16))
    trial = SimpleNamespace(trial_id="t")
    for epoch in range(1, 17):  # ASHA would judge at 3 and 9; nothing is judged here
        assert scheduler.on_trial_result(None, trial, {"training_iteration": epoch, "val_accuracy": 0.0}) \
            == TrialScheduler.CONTINUE


@pytest.mark.parametrize("n_train, flag, rounds, max_t, first_rung", [
    (630, None, 0, 16, 3),            # CK+: an epoch is a pass, the first rung at 3 of 16
    (16383, None, 0, 16, 3),          # under two rounds a pass: still passes
    (28709, None, 8192, 57, 1),       # FER2013: 16 passes are 57 rounds, judged from the first
    (28709, 0, 0, 16, 3),             # --round-images 0: passes whatever the size
    (630, 64, 64, 158, 1),            # --round-images 64 on a small set
])
def test_a_large_data_set_is_searched_in_rounds_judged_from_the_first(n_train: int, flag, rounds: int, max_t: int,
                                                                      first_rung: int) -> None:
    from search.tuning.tuner import build_scheduler

    sized = SearchSettings(round_images=flag).sized_for(n_train)
    assert (sized.round_images, sized.max_t, sized.max_epochs) == (rounds, max_t, 16)
    assert sized.sized_for(n_train) == sized  # sizing twice changes nothing
    assert build_scheduler(sized).rungs[0] == first_rung
    assert max(build_scheduler(sized).rungs) < max_t
