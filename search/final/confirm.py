"""Confirm the search's leading configs by cross-validation before the final model is built.

The search ranks its trials on one validation part, which on a small data set is a few
hundred faces: the best of 50 trials is partly the luckiest. The ``--confirm`` best distinct
configs (as :func:`search.final.ranking.pick_ensemble` ranks them) are therefore each trained
K times (``--confirm-folds``), on K-1 folds of train + validation (by subject where the data
has subject ids, stratified by class) for their trial's epochs, and scored on the fold left
out with the final model's mirror test-time augmentation. The out-of-fold predictions give
each config a cross-validated accuracy and macro-F1 over every train + validation face; the
final members and the best trial are the best by the one ``--metric`` names, the search's
figure breaking ties (with ``--cost-weight``, ties within the noise go to a config at least
twice as fast, :mod:`search.tuning.cost`). A config that diverged or failed in a fold leaves
the ranking. The test split is not read.

Each finished training's predictions are saved in ``confirm.json`` at once, so a resumed run
redoes none. Under a time budget it confirms as many configs as fit before its deadline, and
none when fewer than two fit; on a large data set it is off unless ``--confirm`` asks
(``experiments/README.md``, "The 50-trial search" and the FER2013 sections, has the figures).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from fer_core.dataset import Dataset
from fer_core.errors import ConfigError
from fer_core.evaluate import evaluate_predictions
from fer_core.splits import Splits
from fer_core.staging import write_atomic
from fer_core.transfer import Pretrained
from search.budget import TASK_OVERHEAD_S, now, training_seconds
from search.final.ranking import pick_ensemble
from search.final.tasks import failure_reason, remote_training
from search.records import Confirmation, TrialRecord
from search.settings import ConfirmSettings, Resources
from search.tuning.cost import cheapest_within_noise

log = logging.getLogger("search.final.confirm")

CONFIRM_FILE = "confirm.json"


def folds_of(rest: Dataset, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """K (train, score) index pairs over ``rest``: by subject when it has subject ids."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold  # 1.8 s: not for --help

    if rest.groups is not None:
        subjects = len(set(rest.groups.tolist()))
        if subjects < k:
            raise ConfigError(f"{k} folds: train + validation has only {subjects} subjects")
        return list(StratifiedGroupKFold(k, shuffle=True, random_state=seed).split(rest.images, rest.labels,
                                                                                  rest.groups))
    if np.bincount(rest.labels).min() < k:
        raise ConfigError(f"{k} folds: a class of train + validation has fewer than {k} faces")
    return list(StratifiedKFold(k, shuffle=True, random_state=seed).split(rest.images, rest.labels))


def estimated_seconds(trial: TrialRecord, folds: int, n_rest: int, n_train: int) -> float:
    """One fold's training of ``trial``'s config, from the seconds per face its trial measured.

    A fold trains on (K-1)/K of train + validation, the trial on the training part: a pass
    over the fold's faces takes longer (a round of a large data set's does not).
    """
    fold = round((folds - 1) / folds * n_rest)
    return training_seconds(trial.train_config, fold, trial.image_seconds(n_train)) + TASK_OVERHEAD_S


def how_many_fit(estimates: Sequence[float], folds: int, slots: int, seconds: float) -> int:
    """The most leading configs whose ``folds`` trainings each, ``slots`` at a time, fit in ``seconds``."""
    count, total = 0, 0.0
    for estimate in estimates:
        total += estimate * folds
        if total / max(1, slots) > seconds:
            break
        count += 1
    return count


def confirm_leaders(trials: Sequence[TrialRecord], splits: Splits, settings: ConfirmSettings, resources: Resources,
                    run_dir: Path, ensemble: int, deadline: float = math.inf, init: Optional[Pretrained] = None,
                    cost_weight: float = 0.0, slots: int = 1) -> Confirmation:
    """The search's best configs (:meth:`ConfirmSettings.count`), cross-validated and ranked by it.

    With no confirmation (``--confirm 0``, or a large data set) the search's ``ensemble`` best
    stand, in its order.
    ``init``: the pretrained network the configs fine-tune, if any. ``cost_weight``: ties
    within that many standard errors go to a config at least twice as fast (:mod:`search.tuning.cost`).
    """
    count = settings.count(len(splits.train))
    leaders = pick_ensemble(trials, count or ensemble, cost_weight=cost_weight, faces=len(splits.val))
    if not count:
        skipped = ("--confirm 0" if settings.configs == 0 else
                   f"{len(splits.train)} training faces: {len(splits.val)} validation faces decide alone")
        return Confirmation(settings.folds, 0, tuple(leaders), {}, 0.0, skipped)
    return confirm(leaders, splits, settings, resources, run_dir, deadline, slots=slots, init=init,
                   cost_weight=cost_weight)


def confirm(candidates: Sequence[TrialRecord], splits: Splits, settings: ConfirmSettings, resources: Resources,
            run_dir: Path, deadline: float = math.inf, slots: int = 1,
            init: Optional[Pretrained] = None, cost_weight: float = 0.0) -> Confirmation:
    """Cross-validate ``candidates`` (best first by the search) and rank them by the result.

    With a finite ``deadline`` (:func:`search.budget.now`'s clock) only the leading candidates
    whose trainings fit before it are confirmed (``slots`` at a time); the others follow them in
    the search's order. Candidates that diverged or failed in a fold go to ``left_out``, not
    ``ranked``. ``cost_weight``: cross-validated
    figures within that many standard errors of the best left are a tie, which a config at
    least twice as fast, by its trial's epoch time, wins.
    """
    started = now()
    k = settings.folds
    rest = splits.train.concat(splits.val)
    if len(candidates) < 2:
        return Confirmation(k, 0, tuple(candidates), {}, 0.0, "fewer than 2 configs to compare")
    if math.isfinite(deadline):
        estimates = [estimated_seconds(t, k, len(rest), len(splits.train)) for t in candidates]
        fit = how_many_fit(estimates, k, slots, deadline - started)
        if fit < 2:
            log.info("confirmation skipped: %.0f s left of the time budget, 2 configs need about %.0f s",
                     deadline - started, sum(estimates[:2]) * k / slots)
            return Confirmation(k, 0, tuple(candidates), {}, 0.0, "the time budget left too little for 2 configs")
        if fit < len(candidates):
            log.info("confirming %d of %d configs: what fits in the %.0f s left of the time budget",
                     fit, len(candidates), deadline - started)
        candidates, unconfirmed = candidates[:fit], candidates[fit:]
    else:
        unconfirmed = []
    parts = folds_of(rest, k, settings.seed)
    path = run_dir / CONFIRM_FILE
    done = read_saved(path, k, settings.seed, len(rest))
    jobs = [(t.trial_id, f) for t in candidates for f in range(k) if f"{t.trial_id}/{f}" not in done]
    if jobs:
        log.info("confirming the %d best configs by %d-fold cross-validation over %d train + validation faces "
                 "(%d trainings%s)", len(candidates), k, len(rest), len(jobs),
                 f", {len(candidates) * k - len(jobs)} saved" if done else "")
        _run_jobs(jobs, {t.trial_id: t for t in candidates}, rest, parts, settings, resources, path, done, init)
    scores = {}
    for trial in candidates:
        trial_id = trial.trial_id
        results = [done[f"{trial_id}/{f}"] for f in range(k)]
        broken = next((r for r in results if "predictions" not in r), None)
        if broken is not None:
            scores[trial_id] = dict(broken)  # {"diverged": reason} or {"failed": reason}
            continue
        predicted = np.empty(len(rest), dtype=np.int64)
        for (_, score_idx), result in zip(parts, results):
            predicted[score_idx] = result["predictions"]
        figures = evaluate_predictions(rest.labels, predicted, rest.class_names)
        scores[trial_id] = {"cv_accuracy": figures["accuracy"], "cv_macro_f1": figures["macro_f1"],
                            "fold_accuracy": [float(np.mean(np.asarray(r["predictions"]) == rest.labels[idx]))
                                              for (_, idx), r in zip(parts, results)],
                            "epochs": trial.train_config.epochs}
    key = "cv_macro_f1" if settings.metric == "val_macro_f1" else "cv_accuracy"
    scored = [t for t in candidates if key in scores[t.trial_id]]
    left_out = [t for t in candidates if key not in scores[t.trial_id]]
    ranked = sorted(scored, key=lambda t: -scores[t.trial_id][key])  # stable: search order on ties
    ranked = cheapest_within_noise(ranked, lambda t: scores[t.trial_id][key], lambda t: t.epoch_seconds,
                                   len(rest), cost_weight)
    for trial in ranked:
        score = scores[trial.trial_id]
        log.info("trial %s: validation %.3f, cross-validated accuracy %.3f, macro-F1 %.3f", trial.trial_id,
                 trial.final_metric, score["cv_accuracy"], score["cv_macro_f1"])
    for trial in left_out:
        log.warning("trial %s left the ranking: its cross-validation %s", trial.trial_id,
                    ", ".join(f"{kind} ({reason})" for kind, reason in scores[trial.trial_id].items()))
    return Confirmation(k, len(rest), (*ranked, *unconfirmed), scores, now() - started, left_out=tuple(left_out))


def _run_jobs(jobs: list[tuple[str, int]], trials: dict[str, TrialRecord], rest: Dataset, parts,
              settings: ConfirmSettings, resources: Resources, path: Path, done: dict[str, dict],
              init: Optional[Pretrained] = None) -> None:
    """Train the (trial, fold) jobs as Ray tasks, saving each result to ``path`` as it arrives."""
    import ray  # not before search.cluster.start_ray has chosen Ray's authentication mode

    fold_refs = [(ray.put(rest.subset(a)), ray.put(rest.subset(b))) for a, b in parts]
    task = remote_training(resources)
    init_ref = ray.put(init) if init is not None else None
    pending = {task.remote(trials[t].train_config.to_dict(), *fold_refs[f], resources.threads, mirror=True,
                           weights=False, init=init_ref): (t, f) for t, f in jobs}
    while pending:
        [ref], _ = ray.wait(list(pending), num_returns=1)
        trial_id, fold = pending.pop(ref)
        try:
            result = ray.get(ref)
            done[f"{trial_id}/{fold}"] = {"predictions": result["probabilities"].argmax(axis=1).tolist()}
        except Exception as exc:  # noqa: BLE001  a divergence, a lost worker: this training's alone
            kind, reason = failure_reason(exc)
            done[f"{trial_id}/{fold}"] = {kind: reason}
        _save(path, settings.folds, settings.seed, len(rest), done)


def read_saved(path: Path, folds: int, seed: int, n_rest: int) -> dict[str, dict]:
    """The trainings an earlier attempt of this run finished, if it split the same way."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if saved.get("folds") != folds or saved.get("seed") != seed or saved.get("n_rest") != n_rest:
        return {}
    return dict(saved.get("done", {}))


def _save(path: Path, folds: int, seed: int, n_rest: int, done: dict[str, dict]) -> None:
    write_atomic(path, json.dumps({"folds": folds, "seed": seed, "n_rest": n_rest, "done": done}))
