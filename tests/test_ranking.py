"""Ranking trials (:mod:`search.final.ranking`): which configs the confirmation compares and the final
model is built from, whatever the order Tune lists them in."""

from __future__ import annotations

from typing import Optional

from search.final.ranking import pick_best, pick_ensemble, pick_members
from search.records import TrialRecord


def _trial(trial_id: str, metric: Optional[float], val_loss: float, status: str = "completed",
           **config) -> TrialRecord:
    return TrialRecord(trial_id, status, {"lr": trial_id, **config}, final_metric=metric,
                       history=({"val_accuracy": metric, "val_loss": val_loss},))


def _ids(trials: list[TrialRecord]) -> list[str]:
    return [t.trial_id for t in trials]


def test_pick_ensemble_breaks_ties_by_validation_loss_whatever_the_order() -> None:
    trials = [_trial("a", 0.90, 0.50), _trial("b", 0.94, 0.40), _trial("c", 0.94, 0.20),
              _trial("d", 0.96, 0.90, status="stopped_early"), _trial("e", 0.92, float("nan")),
              _trial("f", 0.92, 0.30), _trial("g", 0.94, 0.10, lr="c"), _trial("x", None, 0.1, status="failed")]
    expected = ["g", "b", "f", "e"]  # c repeats g's config; completed trials before a stopped one
    for order in (trials, trials[::-1], trials[3:] + trials[:3]):
        assert _ids(pick_ensemble(order, 4)) == expected
    assert _ids(pick_ensemble(trials, 10)) == ["g", "b", "f", "e", "a", "d"]
    assert _ids(pick_ensemble(trials, 10, exclude=["g", "b"])) == ["c", "f", "e", "a", "d"]
    assert pick_best(trials).trial_id == "g" and pick_best(trials[-1:]) is None


def test_pick_members_takes_the_confirmed_order_then_the_search_s() -> None:
    trials = [_trial("a", 0.96, 0.1), _trial("b", 0.94, 0.2), _trial("c", 0.92, 0.3), _trial("d", 0.90, 0.4),
              _trial("e", 0.90, 0.5, lr="a")]
    ranked = [trials[2], trials[0]]  # c beat a in the cross-validation; b and d were not confirmed
    assert _ids(pick_members(trials, ranked, 4)) == ["c", "a", "b", "d"]  # e repeats a's config
    assert _ids(pick_members(trials, ranked, 1)) == ["c"]
