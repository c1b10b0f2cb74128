"""``python -m search.run``: find the best CNN for a facial-expression data set.

The run, top to bottom, as :func:`main` reads: check the command line (bad input is one
line and exit status 2, before anything starts); load the data and hold out the test
split once; save the run's state for ``--resume``; start Ray; search (:mod:`search.tuner`);
confirm the leading configs by cross-validation (:mod:`search.confirm`); retrain the best
into the final model, test it once beside the seed's recipe, export it
(:mod:`search.final`); write the report (:mod:`search.report`).
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

from fer_core.data import Dataset, load
from fer_core.errors import ConfigError, run_cli
from fer_core.splits import Splits, make_splits
from search.cli import RUN_DEFINING, check_args, parse_args, restore_args, run_settings
from search.pipeline import RunSettings, build_and_export, confirm_trials, final_members, search_trials
from search.rundir import TUNE_DIR, prepare_run_dir, read_state, write_state

log = logging.getLogger("search.run")

EXIT_INTERRUPTED = 130  # the shell's status for a run stopped by Ctrl-C
EXIT_FAILED = 1


def main(argv: Optional[list[str]] = None) -> int:
    # the command line
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
    data, splits = load_and_split(args.data, args.split, settings)
    timings = {"load_s": time.perf_counter() - clock}

    # the run's state, for --resume
    run_dir.mkdir(parents=True, exist_ok=True)
    state = open_state(run_dir, args, data, resume=args.resume)

    # the search
    from search.tuner import start_ray

    clock = time.perf_counter()
    start_ray(args.address)
    timings["ray_start_s"] = time.perf_counter() - clock
    started = time.time()
    trials = search_trials(settings, run_dir, splits, resume=args.resume)
    timings["search_s"] = time.time() - started
    state["search_seconds"] += timings["search_s"]
    write_state(run_dir, state)
    if search_interrupted(trials, settings, time.time() - started):
        finished = sum(t["status"] != "unfinished" for t in trials)
        log.warning("search interrupted with %d of %d trials finished; continue it with: "
                    "python -m search.run --output %s --name %s --resume",
                    finished, settings.search.trials, args.output, args.name)
        return EXIT_INTERRUPTED

    # the confirmation, then the final model
    deadline = started + settings.time_budget_s if settings.time_budget_s else None
    confirmation = confirm_trials(settings, run_dir, splits, trials, deadline)
    timings["confirm_s"] = confirmation.seconds
    members = final_members(settings, trials, confirmation)
    if not members:
        print(f"search.run: no trial left a config to build the final model from ({len(trials)} trials: failed, "
              f"or diverged in the confirmation); see {run_dir / TUNE_DIR}", file=sys.stderr)
        return EXIT_FAILED
    finished = build_and_export(settings, run_dir, data, splits, members)
    timings.update(finished.timings)

    # the report
    from search.report import build_report, summary_text, write_report

    report = build_report(args.name, settings, data, splits, trials, confirmation, finished,
                          state["search_seconds"], timings)
    write_report(run_dir, report, finished.final.kept[0]["result"]["history"], settings.search.metric)
    print(summary_text(report, run_dir))
    return 0


def load_and_split(source: str, method: str, settings: RunSettings) -> tuple[Dataset, Splits]:
    """The data set and its three parts; too few subjects for the confirmation's folds is said now."""
    if source == "synthetic":
        log.info("no --data given: using the built-in synthetic faces (synthetic:1000)")
    data = load(source)
    splits = make_splits(data, method)
    if settings.confirm.configs:
        from search.confirm import folds_of

        try:
            folds_of(splits.train.concat(splits.val), settings.confirm.folds, settings.confirm.seed)
        except ConfigError as exc:
            raise ConfigError(f"--confirm-folds {settings.confirm.folds}: {exc}") from None
    log.info("data: %s; split %s: %d train, %d validation, %d test", data.describe(), splits.method,
             len(splits.train), len(splits.val), len(splits.test))
    return data, splits


def open_state(run_dir: Path, args: argparse.Namespace, data: Dataset, resume: bool) -> dict:
    """The run's saved state: new, or the resumed run's, whose data must not have changed."""
    fingerprint = data.fingerprint()  # hashes every image: once per run
    if resume:
        state = read_state(run_dir)
        if state["fingerprint"] != fingerprint:
            raise ConfigError(f"--resume: the data at {args.data} changed since run {args.name} started")
    else:
        state = {"args": {k: getattr(args, k) for k in RUN_DEFINING}, "fingerprint": fingerprint,
                 "search_seconds": 0.0}
    write_state(run_dir, state)
    return state


def search_interrupted(trials: list[dict], settings: RunSettings, elapsed_s: float) -> bool:
    """Whether the search stopped before its end: a trial unfinished, or fewer trials than asked
    while the budget (if any) was not spent."""
    budget = settings.search_budget_s
    budget_spent = budget is not None and elapsed_s >= budget
    unfinished = any(t["status"] == "unfinished" for t in trials)
    return unfinished or (len(trials) < settings.search.trials and not budget_spent)


def _quiet_start() -> None:
    """Progress through ``logging``; TensorFlow's start-up chatter and notices a user cannot act on, off."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="search.run"))
