"""``python -m search.run``: find the best CNN for a facial-expression data set.

The run, top to bottom, as :func:`main` reads: check the command line (bad input is one
line and exit status 2, before anything starts); load the data and hold out the test
split once; start Ray; save the run's state and plan its time budget (:mod:`search.budget`),
both kept for ``--resume``; search (:mod:`search.tuning`); confirm the leading configs by
cross-validation and retrain the best into the final model, test it once beside the seed's
recipe, export it (:mod:`search.final`); write the report (:mod:`search.report`). The stages
hand each other records (:mod:`search.records`).
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import Optional

from fer_core.data import load
from fer_core.dataset import Dataset
from fer_core.errors import ConfigError, run_cli
from fer_core.splits import Splits, make_splits
from search.budget import RAY_START_S, Budget, check_budget, now
from search.cli import Command, parse
from search.cluster import check_address, start_ray
from search.final.confirm import folds_of
from search.pipeline import (build_and_export, confirm_trials, final_members, plan_final_stage, search_interrupted,
                             search_trials, sized_settings)
from search.report.build import build_report, write_report
from search.report.markdown import summary_text
from search.rundir import TUNE_DIR, read_state, write_state
from search.settings import RunSettings

log = logging.getLogger("search.run")

EXIT_INTERRUPTED = 130  # the shell's status for a run stopped by Ctrl-C
EXIT_FAILED = 1


def main(argv: Optional[list[str]] = None) -> int:
    # the command line
    begun = now()
    _quiet_start()
    command = parse(argv)
    if command.address:
        check_address(command.address)

    # the data, and the test split held out once
    data, splits = load_and_split(command)
    settings = sized_settings(command.settings, splits)
    timings = {"load_s": now() - begun}
    if not command.resume:
        check_budget(settings.time_budget_s, now() - begun + RAY_START_S, confirm=_confirms(settings))
    clock = now()
    start_ray(command.address)
    timings["ray_start_s"] = now() - clock

    # the run's state and its time budget, kept for --resume
    budget = open_run(command, data, settings, splits, startup_s=now() - begun)

    # the search
    clock = now()
    trials = search_trials(settings, command.run_dir, splits, budget, resume=command.resume)
    timings["search_s"] = now() - clock
    if search_interrupted(trials, settings, budget):
        finished = sum(t.status != "unfinished" for t in trials)
        log.warning("search interrupted with %d of %d trials finished; continue it with: "
                    "python -m search.run --output %s --name %s --resume",
                    finished, settings.search.trials, command.output, command.name)
        return EXIT_INTERRUPTED

    # the confirmation, then the final model
    confirmation = confirm_trials(settings, command.run_dir, splits, trials, budget.confirm_deadline())
    timings["confirm_s"] = confirmation.seconds
    members = final_members(settings, splits, trials, confirmation)
    if not members:
        print(f"search.run: no trial left a config to build the final model from ({len(trials)} trials: failed, "
              f"or diverged in the confirmation); see {command.run_dir / TUNE_DIR}", file=sys.stderr)
        return EXIT_FAILED
    settings = plan_final_stage(settings, splits, trials, members, budget, confirmation.seconds)
    finished = build_and_export(settings, command.run_dir, data, splits, members)
    timings.update(finished.timings)

    # the report
    timings["run_s"] = now() - begun
    shares = budget.shares
    report = build_report(command.name, settings, data, splits, trials, confirmation, finished,
                          budget.search_spent_s, timings, shares.to_json() if shares else None)
    write_report(command.run_dir, report, finished.final.kept[0].history)
    print(summary_text(report, command.run_dir))
    return 0


def load_and_split(command: Command) -> tuple[Dataset, Splits]:
    """The data set and its three parts; too few subjects for the confirmation's folds is said now."""
    if command.data == "synthetic":
        log.info("no --data given: using the built-in synthetic faces (synthetic:1000)")
    data = load(command.data, faces=command.faces)
    splits = make_splits(data, command.split)
    confirm = command.settings.confirm
    if confirm.count(len(splits.train)):
        try:
            folds_of(splits.train.concat(splits.val), confirm.folds, confirm.seed)
        except ConfigError as exc:
            raise ConfigError(f"--confirm-folds {confirm.folds}: {exc}") from None
    log.info("data: %s; split %s: %d train, %d validation, %d test", data.describe(), splits.method,
             len(splits.train), len(splits.val), len(splits.test))
    return data, splits


def open_run(command: Command, data: Dataset, settings: RunSettings, splits: Splits, startup_s: float) -> Budget:
    """The run's saved state and its budget: new (the budget planned from the start-up measured), or
    the resumed run's, whose data must not have changed."""
    fingerprint = data.fingerprint()  # hashes every image: once per run
    if command.resume:
        if read_state(command.run_dir)["fingerprint"] != fingerprint:
            raise ConfigError(f"--resume: the data at {command.data} changed since run {command.name} started")
        return Budget.load(command.run_dir)
    command.run_dir.mkdir(parents=True, exist_ok=True)
    write_state(command.run_dir, {"args": command.defining, "fingerprint": fingerprint})
    budget = Budget.plan(command.run_dir, settings.time_budget_s, startup_s, confirm=_confirms(settings))
    if budget.shares:
        shares = budget.shares
        by_default = not command.budget_given and shares.total_s == settings.small_data_budget_s
        log.info("time budget %.0f s%s: search %.0f s, confirmation %.0f s, final model %.0f s (start-up took %.0f s)",
                 shares.total_s, ", a small data set's default (--time-budget none: no bound)" if by_default else "",
                 shares.search_s, shares.confirm_s, shares.final_s, shares.startup_s)
    return budget


def _confirms(settings: RunSettings) -> bool:
    """Whether the budget keeps a confirmation's share: only ``--confirm 0`` gives it to the search; a
    confirmation off by the data's size leaves it to the final model, as one skipped for time does."""
    return settings.confirm.configs != 0


def _quiet_start() -> None:
    """Progress through ``logging``; TensorFlow's start-up chatter and notices a user cannot act on, off."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="search.run"))
