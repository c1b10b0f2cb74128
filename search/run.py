"""``python -m search.run``: find the best CNN for a facial-expression data set.

The run, top to bottom, as :func:`main` reads: check the command line (bad input is one
line and exit status 2, before anything starts); load the data and hold out the test
split once; save the run's state for ``--resume``; start Ray; search (:mod:`search.tuner`);
confirm the leading configs by cross-validation (:mod:`search.confirm`); retrain the best
into the final model, test it once beside the seed's recipe, export it
(:mod:`search.final`); write the report (:mod:`search.report`). Under a time budget each
stage keeps to its share of it (:mod:`search.budget`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings
from datetime import datetime
from pathlib import Path
from typing import Optional

from fer_core.data import load
from fer_core.dataset import Dataset
from fer_core.errors import ConfigError, run_cli
from fer_core.splits import Splits, make_splits
from search.cli import RUN_DEFINING, check_args, parse_args, restore_args, run_settings
from search.budget import BudgetPlan
from search.pipeline import (build_and_export, confirm_trials, final_members, plan_final_stage, search_trials,
                             sized_settings)
from search.rundir import TUNE_DIR, prepare_run_dir, read_state, write_state
from search.settings import RunSettings

log = logging.getLogger("search.run")

EXIT_INTERRUPTED = 130  # the shell's status for a run stopped by Ctrl-C
EXIT_FAILED = 1


def main(argv: Optional[list[str]] = None) -> int:
    # the command line
    begun = time.monotonic()
    args = parse_args(argv)
    _quiet_start()
    check_args(args)
    args.name = args.name or datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = prepare_run_dir(args.output, args.name, args.resume)
    if args.resume:
        args = restore_args(args, run_dir)
    settings = run_settings(args)
    if args.address:
        from search.tuner import check_address

        check_address(args.address)

    # the data, and the test split held out once
    clock = time.perf_counter()
    data, splits = load_and_split(args.data, args.split, args.faces, settings)
    settings = sized_settings(settings, splits)
    timings = {"load_s": time.perf_counter() - clock}
    from search.tuner import start_ray

    clock = time.perf_counter()
    start_ray(args.address)
    timings["ray_start_s"] = time.perf_counter() - clock

    # the run's state and its budget's plan, kept for --resume
    run_dir.mkdir(parents=True, exist_ok=True)
    state = open_state(run_dir, args, data, settings, startup_s=time.monotonic() - begun)
    plan = BudgetPlan(**state["plan"]) if state.get("plan") else None

    # the search
    started = time.time()
    search_s = plan.search_s - state["search_seconds"] if plan else None
    trials = search_trials(settings, run_dir, splits, search_s, resume=args.resume,
                           share_s=plan.search_s if plan else None)
    timings["search_s"] = time.time() - started
    state = read_state(run_dir) | {"search_seconds": state["search_seconds"] + timings["search_s"]}
    write_state(run_dir, state)
    if search_interrupted(trials, settings, started + search_s if plan else None):
        finished = sum(t["status"] != "unfinished" for t in trials)
        log.warning("search interrupted with %d of %d trials finished; continue it with: "
                    "python -m search.run --output %s --name %s --resume",
                    finished, settings.search.trials, args.output, args.name)
        return EXIT_INTERRUPTED

    # the confirmation, then the final model
    confirmation = confirm_trials(settings, run_dir, splits, trials, time.time() + plan.confirm_s if plan else None)
    timings["confirm_s"] = confirmation.seconds
    members = final_members(settings, splits, trials, confirmation)
    if not members:
        print(f"search.run: no trial left a config to build the final model from ({len(trials)} trials: failed, "
              f"or diverged in the confirmation); see {run_dir / TUNE_DIR}", file=sys.stderr)
        return EXIT_FAILED
    final_s = plan.final_left(state["search_seconds"], confirmation.seconds) if plan else None
    settings = plan_final_stage(settings, splits, trials, members, final_s)
    finished = build_and_export(settings, run_dir, data, splits, members)
    timings.update(finished.timings)

    # the report
    from search.report import build_report, summary_text, write_report

    timings["run_s"] = time.monotonic() - begun
    report = build_report(args.name, settings, data, splits, trials, confirmation, finished,
                          state["search_seconds"], timings, plan)
    write_report(run_dir, report, finished.final.kept[0]["result"]["history"], settings.search.metric)
    print(summary_text(report, run_dir))
    return 0


def load_and_split(source: str, method: str, faces: str, settings: RunSettings) -> tuple[Dataset, Splits]:
    """The data set and its three parts; too few subjects for the confirmation's folds is said now."""
    if source == "synthetic":
        log.info("no --data given: using the built-in synthetic faces (synthetic:1000)")
    data = load(source, faces=faces)
    splits = make_splits(data, method)
    if settings.confirm.count(len(splits.train)):
        from search.confirm import folds_of

        try:
            folds_of(splits.train.concat(splits.val), settings.confirm.folds, settings.confirm.seed)
        except ConfigError as exc:
            raise ConfigError(f"--confirm-folds {settings.confirm.folds}: {exc}") from None
    log.info("data: %s; split %s: %d train, %d validation, %d test", data.describe(), splits.method,
             len(splits.train), len(splits.val), len(splits.test))
    return data, splits


def open_state(run_dir: Path, args: argparse.Namespace, data: Dataset, settings: RunSettings,
               startup_s: float) -> dict:
    """The run's saved state: new (with its budget's plan, from the start-up measured), or the
    resumed run's, whose data must not have changed."""
    fingerprint = data.fingerprint()  # hashes every image: once per run
    if args.resume:
        state = read_state(run_dir)
        if state["fingerprint"] != fingerprint:
            raise ConfigError(f"--resume: the data at {args.data} changed since run {args.name} started")
        return state
    # only --confirm 0 gives the confirmation's share to the search; a confirmation off by the data's
    # size leaves it to the final model, as one skipped for time always has (search.budget)
    plan = (BudgetPlan.of(settings.time_budget_s, startup_s, confirm=settings.confirm.configs != 0)
            if settings.time_budget_s else None)
    if plan:
        by_default = args.time_budget is None and plan.total_s == settings.small_data_budget_s
        log.info("time budget %.0f s%s: search %.0f s, confirmation %.0f s, final model %.0f s (start-up took %.0f s)",
                 plan.total_s, ", a small data set's default (--time-budget none: no bound)" if by_default else "",
                 plan.search_s, plan.confirm_s, plan.final_s, plan.startup_s)
    state = {"args": {k: getattr(args, k) for k in RUN_DEFINING}, "fingerprint": fingerprint,
             "search_seconds": 0.0, "plan": plan.to_dict() if plan else None}
    write_state(run_dir, state)
    return state


def search_interrupted(trials: list[dict], settings: RunSettings, deadline: Optional[float]) -> bool:
    """Whether the search stopped before its end: a trial unfinished, or fewer trials than asked
    before its deadline (if any) had passed."""
    budget_spent = deadline is not None and time.time() >= deadline
    unfinished = any(t["status"] == "unfinished" for t in trials)
    return unfinished or (len(trials) < settings.search.trials and not budget_spent)


def _quiet_start() -> None:
    """Progress through ``logging``; TensorFlow's start-up chatter and notices a user cannot act on, off."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="search.run"))
