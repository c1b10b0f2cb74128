"""The cost rule (``--cost-weight``): within the noise the cheaper config wins, in the rankings
and in what the searcher tells TPE."""

from __future__ import annotations

import math
import pickle

import pytest

from search.records import TrialRecord
from search.settings import SearchSettings
from search.tuning.cost import cheapest_within_noise, cost_adjusted, standard_error

# (name, validation accuracy, seconds an epoch), best first; D's cost is unknown
ITEMS = [("A", 0.90, 4.0), ("E", 0.895, 3.0), ("B", 0.89, 1.0), ("D", 0.88, 0.0), ("C", 0.80, 0.5)]


def _order(faces: int, weight: float) -> str:
    return "".join(name for name, _, _ in cheapest_within_noise(ITEMS, lambda i: i[1], lambda i: i[2], faces, weight))


def test_the_standard_error_is_the_binomial_one() -> None:
    assert standard_error(0.85, 156) == pytest.approx(0.0286, abs=1e-4)  # CK+'s validation part
    assert standard_error(0.60, 3589) == pytest.approx(0.0082, abs=1e-4)  # FER2013's PublicTest
    assert standard_error(0.9, 0) == 0.0 and standard_error(float("nan"), 100) == 0.0


def test_within_the_noise_the_cheaper_config_comes_first() -> None:
    # one standard error on 156 faces (2.4 points at 90%): A, E, B and D tie, and B is the cheapest;
    # then A: E is not twice as cheap; D's cost is unknown; C, 10 points down, stays last
    assert _order(156, 1.0) == "BAEDC"
    assert _order(156, 5.0) == "CBAED"  # 12 points of noise: all tie
    assert _order(156, 0.0) == "AEBDC"  # weight 0: the scores alone
    assert _order(100_000, 1.0) == "AEBDC"  # on many faces no two of them tie


def test_the_searcher_is_told_a_score_less_its_cost() -> None:
    se = standard_error(0.8, 156)
    assert cost_adjusted(0.8, 4.0, 1.0, 156, 1.0) == pytest.approx(0.8 - se)  # 4x the cost: one error less
    assert cost_adjusted(0.8, 0.25, 1.0, 156, 1.0) == pytest.approx(0.8 + se)
    assert cost_adjusted(0.8, 2.0, 1.0, 156, 2.0) == pytest.approx(0.8 - se)
    assert cost_adjusted(0.8, 4.0, 1.0, 156, 0.0) == 0.8
    assert cost_adjusted(0.8, 0.0, 1.0, 156, 1.0) == 0.8 and cost_adjusted(0.8, 4.0, 0.0, 156, 1.0) == 0.8


def _trial(trial_id: str, metric: float, seconds: float, status: str = "completed") -> TrialRecord:
    return TrialRecord(trial_id, status, {"lr": trial_id}, final_metric=metric,
                       history=({"val_accuracy": metric, "val_loss": 0.5, "train_seconds": seconds,
                                 "val_seconds": 0.1},))


def test_the_rankings_give_ties_to_the_cheaper_trial_among_those_that_ran_their_budget() -> None:
    from search.final.ranking import pick_ensemble, pick_members

    trials = [_trial("slow", 0.92, 40.0), _trial("fast", 0.91, 5.0), _trial("poor", 0.80, 1.0),
              _trial("early", 0.93, 0.5, status="stopped_early")]
    ids = lambda picked: [t.trial_id for t in picked]  # noqa: E731
    assert ids(pick_ensemble(trials, 4)) == ["slow", "fast", "poor", "early"]
    assert ids(pick_ensemble(trials, 4, cost_weight=1.0, faces=156)) == ["fast", "slow", "poor", "early"]
    assert ids(pick_ensemble(trials, 4, cost_weight=1.0, faces=20_000)) == ["slow", "fast", "poor", "early"]
    # the final members: the confirmation's order first, then the search's by the same rule
    assert ids(pick_members(trials, [trials[2]], 3, cost_weight=1.0, faces=156)) == ["poor", "fast", "slow"]


def _report(searcher, trial_id: str, accuracy: float, seconds: list[float]) -> None:
    for epoch, s in enumerate(seconds, 1):
        searcher.on_trial_result(trial_id, {"val_accuracy": accuracy, "training_iteration": epoch,
                                            "train_seconds": s, "val_seconds": 0.0})
    searcher.on_trial_complete(trial_id, {"val_accuracy": accuracy, "training_iteration": len(seconds)})


@pytest.mark.parametrize("weight", [0.0, 1.0])
def test_the_searcher_tells_tpe_scores_weighed_against_the_seed_recipe_s_time(weight: float) -> None:
    from search.tuning.tuner import build_searcher

    searcher = build_searcher(SearchSettings(trials=6, seed=3, cost_weight=weight), faces=156)
    for trial_id in ("seed", "dear", "cheap", "unknown"):
        assert isinstance(searcher.suggest(trial_id), dict)
    assert searcher.first_trial == "seed"
    searcher.on_trial_result("cheap", {"val_accuracy": 0.8, "training_iteration": 1, "train_seconds": 0.5})
    # before the seed's recipe reported: against the median of the trials' costs (0.5 and 8 s)
    _report(searcher, "dear", 0.8, [9.0, 8.0, 8.0])
    _report(searcher, "seed", 0.8, [3.0, 2.0, 2.0])  # its median epoch: 2 s
    _report(searcher, "cheap", 0.8, [0.5, 0.5])
    searcher.on_trial_complete("unknown", {"val_accuracy": 0.8, "training_iteration": 1})
    searcher = pickle.loads(pickle.dumps(searcher))  # as Tune checkpoints it; the costs survive
    assert isinstance(searcher.suggest("late"), dict)
    _report(searcher, "late", 0.8, [8.0])  # 4x the seed's
    se = standard_error(0.8, 156)
    told = {t.number: t.value for t in searcher._ot_study.trials}
    expected = [0.8, 0.8 - weight * se / 2 * math.log2(8.0 / 4.25), 0.8 + weight * se, 0.8, 0.8 - weight * se]
    assert [told[n] for n in range(5)] == pytest.approx(expected)


@pytest.mark.parametrize("weight, expected", [(0.0, ["dear", "cheap"]), (2.0, ["cheap", "dear"])])
def test_the_confirmation_ranks_cross_validated_ties_by_cost(tmp_path, weight: float, expected: list[str]) -> None:
    """Two configs 2 faces apart in cross-validation (about 1.5 standard errors): by accuracy the
    dearer leads; at cost weight 2 it is a tie, and the cheaper leads. Saved folds: nothing trains."""
    import json

    from fer_core.data import load
    from fer_core.splits import make_splits
    from search.final.confirm import CONFIRM_FILE, confirm, folds_of
    from search.settings import ConfirmSettings, Resources
    from search.tuning.space import seed_point

    splits = make_splits(load("synthetic:120"), "subject")
    rest = splits.train.concat(splits.val)
    parts = folds_of(rest, 2, 7)
    trials = [TrialRecord(name, "completed", {**seed_point(), "seed": i}, final_metric=0.9,
                          history=({"train_seconds": seconds, "val_seconds": 0.0},))
              for i, (name, seconds) in enumerate([("dear", 40.0), ("cheap", 10.0)])]

    def wrong(fold: int, faces: int) -> list[int]:
        labels = rest.labels[parts[fold][1]].copy()
        labels[:faces] = (labels[:faces] + 1) % rest.n_classes
        return labels.tolist()

    done = {"dear/0": {"predictions": wrong(0, 2)}, "dear/1": {"predictions": wrong(1, 0)},
            "cheap/0": {"predictions": wrong(0, 2)}, "cheap/1": {"predictions": wrong(1, 2)}}
    (tmp_path / CONFIRM_FILE).write_text(json.dumps({"folds": 2, "seed": 7, "n_rest": len(rest), "done": done}))
    result = confirm(trials, splits, ConfirmSettings(configs=2, folds=2, seed=7), Resources(), tmp_path,
                     cost_weight=weight)
    gap = result.scores["dear"]["cv_accuracy"] - result.scores["cheap"]["cv_accuracy"]
    se = standard_error(result.scores["dear"]["cv_accuracy"], len(rest))
    assert gap == pytest.approx(2 / len(rest)) and se < gap < 2 * se
    assert [t.trial_id for t in result.ranked] == expected
