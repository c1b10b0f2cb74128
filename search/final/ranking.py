"""Ranking trials: which configs the confirmation compares and the final model is built from."""

from __future__ import annotations

import math
from typing import Iterable, Optional, Sequence

from search.records import TrialRecord
from search.tuning.cost import cheapest_within_noise


def pick_ensemble(trials: Sequence[TrialRecord], size: int, exclude: Iterable[str] = (), cost_weight: float = 0.0,
                  faces: int = 0) -> list[TrialRecord]:
    """The ``size`` best trials, best first: by final metric, preferring trials that ran
    their whole budget; configs that are the same are taken once; ``exclude``: trial ids left out.

    Ties (on 156 validation faces many trials share an accuracy) go to the lower final
    validation loss, then to the trial id, so the pick does not depend on the order in
    which Tune lists the trials (which differs after ``--resume``). With ``cost_weight``,
    among the trials that ran their whole budget (and then among the others) scores within
    that many standard errors on the ``faces`` validation faces count as a tie, which a
    trial at least twice as fast wins (:func:`search.tuning.cost.cheapest_within_noise`).
    """
    def rank(trial: TrialRecord) -> tuple:
        loss = trial.history[-1].get("val_loss") if trial.history else None
        loss = loss if isinstance(loss, (int, float)) and math.isfinite(loss) else math.inf
        return trial.status == "completed", trial.final_metric, -loss, trial.trial_id

    excluded = set(exclude)
    scored = [t for t in trials if t.scored and t.trial_id not in excluded]
    scored.sort(key=rank, reverse=True)
    scored = [trial for completed in (True, False)
              for trial in cheapest_within_noise([t for t in scored if (t.status == "completed") == completed],
                                                 lambda t: t.final_metric, lambda t: t.epoch_seconds, faces,
                                                 cost_weight)]
    picked: list[TrialRecord] = []
    for trial in scored:
        if all(trial.config != other.config for other in picked):
            picked.append(trial)
        if len(picked) == size:
            break
    return picked


def pick_members(trials: Sequence[TrialRecord], ranked: Sequence[TrialRecord], size: int, exclude: Iterable[str] = (),
                 cost_weight: float = 0.0, faces: int = 0) -> list[TrialRecord]:
    """The ``size`` final members: ``ranked`` first, then the search's next best configs
    (none of ``exclude``, the trial ids the confirmation saw diverge; ``cost_weight`` and
    ``faces`` as :func:`pick_ensemble` takes them)."""
    members = list(ranked[:size])
    for trial in pick_ensemble(trials, size + len(members), exclude, cost_weight, faces):
        if len(members) == size:
            break
        if all(trial.config != other.config for other in members):
            members.append(trial)
    return members


def pick_best(trials: Sequence[TrialRecord]) -> Optional[TrialRecord]:
    """The best trial: highest final metric, preferring trials that ran their whole budget."""
    picked = pick_ensemble(trials, 1)
    return picked[0] if picked else None
