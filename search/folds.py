"""The papers' protocol (``--folds K``): the whole run once per outer fold, every face tested once.

The data is split into K outer folds (:func:`fer_core.splits.outer_folds`: by subject where
there are subject ids, else by image). Each fold is a run of its own in ``run_dir/fold-N/``:
its validation carved from the other folds, its search, confirmation and final model beside
the seed's recipe, tested once on the fold held out; no model is exported, since the folds
measure a recipe rather than make one. A finished fold leaves ``fold.json``
(:class:`search.records.FoldRecord`), so ``--resume`` goes on at the fold it stopped in, and
each fold has an equal share of the time budget, planned once. The report pools the folds'
test faces (:class:`search.records.FoldsReport`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Optional

from fer_core.data import load
from fer_core.dataset import Dataset
from fer_core.errors import ConfigError
from fer_core.evaluate import evaluate_confusion
from fer_core.splits import Splits, outer_folds
from fer_core.staging import write_atomic
from search.budget import BUDGET_FILE, RAY_START_S, Budget, check_budget, now
from search.cli import Command
from search.cluster import start_ray
from search.final.confirm import folds_of
from search.pipeline import finish, open_state, search_interrupted, search_skipped, search_trials
from search.records import FoldRecord, FoldsReport
from search.rundir import TUNE_DIR, drop_final_states
from search.settings import RunSettings
from search.tuning.prior import prior_records

log = logging.getLogger("search.folds")

FOLD_FILE = "fold.json"


def fold_dir(run_dir: Path, fold: int) -> Path:
    """The folder of outer fold ``fold`` (from 0) inside the run's."""
    return run_dir / f"fold-{fold}"


def load_folds(command: Command, begun: float) -> tuple[Dataset, list[Splits]]:
    """The data and its outer folds, each fold's confirmation and time share checked before Ray starts."""
    settings = command.settings
    data = load(command.data, faces=command.faces)
    parts = outer_folds(data, settings.folds)
    confirm = settings.confirm
    for k, splits in enumerate(parts):
        if confirm.count(len(splits.train)):
            try:
                folds_of(splits.train.concat(splits.val), confirm.folds, confirm.seed)
            except ConfigError as exc:
                raise ConfigError(f"--confirm-folds {confirm.folds}: in outer fold {k}, {exc}") from None
    total = settings.budget_for(len(parts[0].train))
    if total is not None and not command.resume:
        startup = now() - begun + RAY_START_S
        try:
            check_budget((total - startup) / len(parts), 0.0, confirm=confirm.configs != 0)
        except ConfigError:
            raise ConfigError(f"--time-budget {total:g}s: too short for {len(parts)} folds, each of which needs "
                              "time for one trial at least; expected more time or fewer folds") from None
    log.info("data: %s; %d outer folds %s: %s test faces", data.describe(), len(parts),
             "by subject" if parts[0].method == "subject" else "by image",
             ", ".join(str(len(s.test)) for s in parts))
    return data, parts


def run_folds(command: Command, begun: float) -> Optional[FoldsReport]:
    """Every fold, in order, skipping those a previous attempt finished; the pooled report, or None when
    a fold's search was interrupted (``--resume`` goes on from there)."""
    data, parts = load_folds(command, begun)
    settings = command.settings.on_cluster(start_ray(command.address, command.settings.search.resources))
    total = settings.budget_for(len(parts[0].train))
    share = (total - (now() - begun)) / len(parts) if total is not None else None
    state = open_state(command, data, fold_share_s=share)
    share = state.get("fold_share_s")
    records = []
    for k, splits in enumerate(parts):
        done = fold_dir(command.run_dir, k) / FOLD_FILE
        if done.is_file():
            records.append(FoldRecord.from_json(json.loads(done.read_text())))
            log.info("outer fold %d of %d: finished earlier (test accuracy %.3f)", k + 1, len(parts),
                     records[-1].test["accuracy"])
            continue
        record = run_fold(settings, fold_dir(command.run_dir, k), data, splits, k, share)
        if record is None:
            return None
        records.append(record)
    return pool(command, data, settings, records, total, now() - begun)


def run_fold(settings: RunSettings, folder: Path, data: Dataset, splits: Splits, fold: int,
             share_s: Optional[float]) -> Optional[FoldRecord]:
    """One outer fold as a run of its own in ``folder`` within ``share_s`` seconds (None: unbounded);
    its record, saved as ``fold.json``, or None when its search was interrupted."""
    started = now()
    resume = (folder / TUNE_DIR).exists()
    folder.mkdir(parents=True, exist_ok=True)
    settings = dataclasses.replace(settings, time_budget_s=share_s, small_data_budget_s=None).sized_for(
        len(splits.train))
    budget = (Budget.load(folder) if (folder / BUDGET_FILE).is_file() else
              Budget.plan(folder, share_s, 0.0, confirm=settings.confirm.configs != 0))
    people = len(set(splits.test.groups.tolist())) if splits.test.groups is not None else None
    log.info("outer fold %d: %d test faces%s held out; searching on %d train and %d validation faces", fold + 1,
             len(splits.test), f" of {people} people" if people else "", len(splits.train), len(splits.val))
    skipped = search_skipped(settings, splits, budget)
    trials = prior_records(settings.search) if skipped else search_trials(settings, folder, splits, budget, resume=resume)
    if not skipped and search_interrupted(trials, settings, budget):
        return None
    finished = finish(settings, folder, data, splits, trials, budget, export=False, skipped=skipped)
    if finished is None:
        raise ConfigError(f"outer fold {fold}: no trial left a config to build the final model from "
                          f"({len(trials)} trials); see {folder / TUNE_DIR}")
    best = finished.members[0]
    record = FoldRecord(fold=fold, n_test=len(splits.test), people=people, test=dict(finished.test),
                        seed_recipe_test=finished.final.seed_recipe.get("metrics"), best_trial_id=best.trial_id,
                        best_config=best.train_config.to_dict(),
                        trials_completed=sum(t.scored for t in trials),
                        trials_failed=sum(t.status == "failed" for t in trials), seconds=round(now() - started, 1))
    write_atomic(folder / FOLD_FILE, json.dumps(record.to_json(), indent=2))
    drop_final_states(folder)
    log.info("outer fold %d: test accuracy %.3f, macro-F1 %.3f on %d faces", fold + 1, record.test["accuracy"],
             record.test["macro_f1"], record.n_test)
    return record


def pool(command: Command, data: Dataset, settings: RunSettings, records: list[FoldRecord],
         total_s: Optional[float], run_s: float) -> FoldsReport:
    """The folds' test faces pooled, the final models' and the seed recipe's, into one report."""
    names = data.class_names

    def pooled(tests: list[Optional[dict]]) -> Optional[dict]:
        if any(t is None for t in tests):
            return None
        matrix = [[sum(t["confusion_matrix"][i][j] for t in tests) for j in range(len(names))]
                  for i in range(len(names))]
        return evaluate_confusion(matrix, names)

    return FoldsReport(name=command.name, data=data.source, n_images=len(data), folds=len(records),
                       by_subject=data.groups is not None, metric=settings.search.metric,
                       seed=settings.search.seed, time_budget_s=total_s,
                       initialized_from=settings.search.init.summary() if settings.search.init else None,
                       test=pooled([r.test for r in records]),
                       seed_recipe_test=pooled([r.seed_recipe_test for r in records]),
                       fold_records=tuple(records), run_s=run_s)
