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

from fer_core.errors import run_cli
from search.budget import now
from search.cli import Command, parse
from search.cluster import check_address, start_ray
from search.folds import run_folds
from search.pipeline import finish, load_and_split, open_run, search_interrupted, search_skipped, search_trials
from search.report.build import build_report, write_folds_report, write_report
from search.report.markdown import folds_summary_text, summary_text
from search.rundir import TUNE_DIR, drop_final_states
from search.tuning.prior import prior_records

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
    if command.settings.folds is not None:
        return main_folds(command, begun)

    # the data, the test split held out once, and the cluster
    data, splits, settings = load_and_split(command, begun)  # a budget too short for one trial is refused here
    timings = {"load_s": now() - begun}
    settings = settings.on_cluster(start_ray(command.address, settings.search.resources))
    timings["ray_start_s"] = now() - begun - timings["load_s"]

    # the run's state and its time budget, kept for --resume
    budget = open_run(command, data, settings, startup_s=now() - begun)

    # the search, unless the budget is too short for one to pay: then the built-in prior's configs train
    clock = now()
    skipped = search_skipped(settings, splits, budget)
    if skipped:
        trials = prior_records(settings.search)
    else:
        trials = search_trials(settings, command.run_dir, splits, budget, resume=command.resume)
    timings["search_s"] = now() - clock
    if not skipped and search_interrupted(trials, settings, budget):
        finished = sum(t.status != "unfinished" for t in trials)
        log.warning("search interrupted with %d of %d trials finished; continue it with: "
                    "python -m search.run --output %s --name %s --resume",
                    finished, settings.search.trials, command.output, command.name)
        return EXIT_INTERRUPTED

    # the confirmation, then the final model, tested once and exported
    try:
        finished = finish(settings, command.run_dir, data, splits, trials, budget, skipped=skipped)
    except KeyboardInterrupt:
        return _interrupted(command)
    if finished is None:
        print(f"search.run: no trial left a config to build the final model from ({len(trials)} trials: failed, "
              f"or diverged in the confirmation); see {command.run_dir / TUNE_DIR}", file=sys.stderr)
        return EXIT_FAILED

    # the report
    timings = timings | dict(finished.timings) | {"run_s": now() - begun}
    report = build_report(command.name, settings, data, splits, trials, finished, budget.search_spent_s, timings,
                          budget.shares)
    write_report(command.run_dir, report, finished.final.kept[0].history)
    drop_final_states(command.run_dir)
    print(summary_text(report, command.run_dir))
    return 0


def main_folds(command: Command, begun: float) -> int:
    """``--folds``: the papers' protocol (:mod:`search.folds`), each outer fold a run of its own, pooled."""
    try:
        report = run_folds(command, begun)
    except KeyboardInterrupt:
        return _interrupted(command)
    if report is None:
        log.warning("interrupted in an outer fold; continue with: python -m search.run --output %s --name %s "
                    "--resume", command.output, command.name)
        return EXIT_INTERRUPTED
    write_folds_report(command.run_dir, report)
    print(folds_summary_text(report, command.run_dir))
    return 0


def _interrupted(command: Command) -> int:
    """Ctrl-C outside the search (which stops on its own): the finished trials and trainings are kept,
    and the final stage's go on from their last saved states (:mod:`fer_core.checkpoint`); say how."""
    log.warning("interrupted: finished trials and trainings are kept, and the final stage's trainings go on from "
                "their last saved states, with: python -m search.run --output %s --name %s --resume",
                command.output, command.name)
    return EXIT_INTERRUPTED


def _quiet_start() -> None:
    """Progress through ``logging``; TensorFlow's start-up chatter and notices a user cannot act on, off."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="search.run"))
