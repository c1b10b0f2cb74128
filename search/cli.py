"""The command line of ``python -m search.run``: its flags, their checks, and the settings they make.

Every flag is checked before anything starts, naming the flag and what was expected;
:func:`run_settings` turns the flags into the typed settings the stages take, so nothing
below this module sees the argparse namespace. On ``--resume`` the flags that define a run
come from its ``run.json`` (:data:`RUN_DEFINING`), not from the command line.
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path
from typing import Optional

from fer_core.config import NORMALIZATIONS
from fer_core.images import FACES
from fer_core.errors import ConfigError
from fer_core.splits import SPLITS
from search.budget import CONFIRM_SHARE, FINAL_SHARE, SEARCH_SHARE
from search.confirm import DEFAULT_CONFIRM, DEFAULT_FOLDS, ConfirmSettings
from search.final import (DEFAULT_ENSEMBLE, DEFAULT_FINAL_EPOCHS_SCALE, DEFAULT_FINAL_INPUTS, DEFAULT_FINAL_MIXUP,
                          FinalSettings)
from search.settings import RunSettings
from search.rundir import read_state
from search.tasks import Resources
from search.space import LARGE_DATA, ROUND_IMAGES
from search.tuner import DEFAULT_MAX_EPOCHS, METRICS, SAMPLERS, SCHEDULERS, SearchSettings

# the arguments that define a run; --resume takes them from run.json, not the command line
RUN_DEFINING = ("data", "split", "trials", "max_epochs", "metric", "seed", "cpus_per_trial", "gpus_per_trial",
                "points", "confirm", "confirm_folds", "sampler", "scheduler", "time_budget", "faces", "init",
                "round_images", "cost_weight")
# run-defining arguments added since the first runs: a run.json without them ran without
# confirmation, with the random start, under the recent-trials ASHA, an epoch a pass
RUN_DEFINING_BEFORE = {"confirm": 0, "confirm_folds": 3, "sampler": SAMPLERS[0], "scheduler": SCHEDULERS[0],
                       "time_budget": None, "faces": "auto", "init": None, "round_images": 0, "cost_weight": 0.0}
# the built-in faces are for a first look: the run fits in 10 minutes on 2 cores (experiments/bench_first_run.py)
FIRST_RUN_DATA = "synthetic"
FIRST_RUN_BUDGET = "8m"
# a smaller data set's run without --time-budget is bounded too, so that it ends within 30 min: CK+'s
# 50 trials took 12.5-80.6 min unbounded (experiments/README.md, "A default budget for small data sets")
SMALL_DATA_BUDGET = "27m"
NO_BUDGET = "none"
DESCRIPTION = "find the best CNN for a facial-expression data set"


def build_parser(parser: type[argparse.ArgumentParser] = argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The flags, their defaults and help; ``parser``: the class that reports mistakes."""
    p = parser(prog="python -m search.run", description=f"FER Tune: {DESCRIPTION}.")
    p.add_argument("--trials", type=int, default=50, help="number of trials (default 50)")
    p.add_argument("--data", default="synthetic",
                   help="CK+/FER2013 CSV, folder of class folders, or synthetic[:N] (default: the synthetic set)")
    p.add_argument("--faces", default=FACES[0],
                   help="auto (default): crop photos to their largest face, leave face crops as they are; "
                        "crop: crop every image; none: only resize")
    p.add_argument("--split", default="auto", help=f"held-out test split: {', '.join(SPLITS)} (default auto)")
    p.add_argument("--max-epochs", type=int, default=DEFAULT_MAX_EPOCHS,
                   help=f"epoch budget of one trial, both phases (default {DEFAULT_MAX_EPOCHS})")
    p.add_argument("--round-images", type=int, default=None, metavar="N",
                   help=f"a trial's epoch is a round of N training faces, so that trials are judged before whole "
                        f"passes (default: {ROUND_IMAGES} where the training part holds twice as many, else a pass; "
                        "0: always a pass); --max-epochs still counts passes")
    p.add_argument("--metric", default=METRICS[0], help=f"what the search maximises: {', '.join(METRICS)} "
                                                        f"(default {METRICS[0]})")
    p.add_argument("--points", default=None,
                   help="JSON file of configs to try first, after the seed's recipe (a dict or a list of dicts)")
    p.add_argument("--init", default=None, metavar="MODEL",
                   help="fine-tune this model (a run's best/ folder or its model.keras) instead of searching "
                        "networks from scratch; the search space becomes the fine-tuning space")
    p.add_argument("--cost-weight", type=float, default=0.0, metavar="W",
                   help="weigh accuracy against time: validation scores within W standard errors count as a tie, "
                        "which a config at least twice as fast wins, and the search counts a config 4 times as "
                        "slow as W standard errors worse (default 0: accuracy alone)")
    p.add_argument("--ensemble", type=int, default=DEFAULT_ENSEMBLE,
                   help=f"the final model averages this many of the best configs (default {DEFAULT_ENSEMBLE})")
    p.add_argument("--final-epochs-scale", type=float, default=DEFAULT_FINAL_EPOCHS_SCALE,
                   help="the final members train for this many times their trial's epochs "
                        f"(default {DEFAULT_FINAL_EPOCHS_SCALE:g})")
    p.add_argument("--final-mixup", type=float, default=DEFAULT_FINAL_MIXUP,
                   help="the final members also train with mixup of this Beta parameter "
                        f"(default {DEFAULT_FINAL_MIXUP:g}: off, as in their trials)")
    p.add_argument("--final-inputs", nargs="+", default=list(DEFAULT_FINAL_INPUTS), metavar="NORMALIZATION",
                   help="each final config trains once per input normalization named, all averaged: "
                        f"{', '.join(NORMALIZATIONS)} (default {' '.join(DEFAULT_FINAL_INPUTS)})")
    p.add_argument("--confirm", type=int, default=None,
                   help="cross-validate this many of the best configs over train + validation after the search "
                        f"and rank the final members by it (default {DEFAULT_CONFIRM}, none from {LARGE_DATA} "
                        "training faces on; 0: by validation alone)")
    p.add_argument("--confirm-folds", type=int, default=DEFAULT_FOLDS,
                   help=f"folds of that cross-validation, by subject where there are subject ids (default {DEFAULT_FOLDS})")
    p.add_argument("--sampler", default=SAMPLERS[0],
                   help="startup (default): random for two fifths of the search, then multivariate TPE; "
                        "tpe: Optuna's TPESampler as it comes")
    p.add_argument("--scheduler", default=SCHEDULERS[0],
                   help="asha (default): stop a trial at epochs 3 and 9 of 16 (rounds 1, 3, 9, ...) unless among the "
                        "best quarter of the last 9 trials there; hyperband: Ray's asynchronous Hyperband; "
                        "none: every trial runs all its epochs")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampler and of the folds (default 0)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs per trial, and TF threads (default 1)")
    p.add_argument("--gpus-per-trial", type=float, default=0.0, help="GPUs per trial (default 0)")
    p.add_argument("--time-budget", default=None,
                   help="bound the whole run, e.g. 30m, 2h, 90s: after start-up the search has "
                        f"{100 * SEARCH_SHARE:.0f}%% of it, the confirmation {100 * CONFIRM_SHARE:.0f}%%, the final "
                        f"model {100 * FINAL_SHARE:.0f}%%, each sized to fit; {NO_BUDGET}: no bound (default "
                        f"{SMALL_DATA_BUDGET} below {LARGE_DATA} training faces, none from there on; "
                        f"{FIRST_RUN_BUDGET} on the built-in synthetic faces)")
    p.add_argument("--address", default=None, help="address of a running Ray cluster (default: start a local one)")
    p.add_argument("--output", default="runs", help="folder of runs (default runs/)")
    p.add_argument("--name", default=None, help="name of this run (default: a timestamp)")
    p.add_argument("--resume", action="store_true", help="continue the run --name in --output")
    return p


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    """The command line, parsed; values are checked by :func:`check_args`."""
    return build_parser().parse_args(argv)


def parse_duration(text: Optional[str]) -> Optional[float]:
    """``30m``, ``2h``, ``90s`` or plain seconds, as seconds; None stays None."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(text))
    if not match or float(match.group(1)) <= 0:
        raise ConfigError(f"--time-budget {text!r}: expected a positive duration like 90s, 30m or 2h")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def time_budget_of(text: Optional[str]) -> Optional[float]:
    """``--time-budget`` as seconds; None when it is not given or is ``none``."""
    if text is None or text.strip().lower() == NO_BUDGET:
        return None
    try:
        return parse_duration(text)
    except ConfigError:
        raise ConfigError(f"--time-budget {text!r}: expected a positive duration like 90s, 30m or 2h, or "
                          f"{NO_BUDGET}") from None


def check_args(args: argparse.Namespace) -> None:
    """Refuse bad values before anything starts, naming the flag and what was expected."""
    if args.trials < 1:
        raise ConfigError(f"--trials {args.trials}: expected an integer >= 1")
    if args.max_epochs < 1:
        raise ConfigError(f"--max-epochs {args.max_epochs}: expected an integer >= 1")
    if not 0 <= args.cost_weight <= 10:  # also refuses nan
        raise ConfigError(f"--cost-weight {args.cost_weight}: expected a number in [0, 10] (0: accuracy alone)")
    if args.round_images is not None and args.round_images < 0:
        raise ConfigError(f"--round-images {args.round_images}: expected an integer >= 0 (0: an epoch is a pass)")
    for flag, value, choices in (("--split", args.split, SPLITS), ("--metric", args.metric, METRICS),
                                 ("--faces", args.faces, FACES),
                                 ("--sampler", args.sampler, SAMPLERS), ("--scheduler", args.scheduler, SCHEDULERS)):
        if value not in choices:
            raise ConfigError(f"{flag} {value!r}: expected one of {', '.join(choices)}")
    if not (args.cpus_per_trial > 0 and math.isfinite(args.cpus_per_trial)):
        raise ConfigError(f"--cpus-per-trial {args.cpus_per_trial}: expected a number > 0")
    if not (args.gpus_per_trial >= 0 and math.isfinite(args.gpus_per_trial)):
        raise ConfigError(f"--gpus-per-trial {args.gpus_per_trial}: expected a number >= 0")
    if args.name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", args.name):
        raise ConfigError(f"--name {args.name!r}: expected letters, digits, '.', '_' or '-'")
    if args.ensemble < 1:
        raise ConfigError(f"--ensemble {args.ensemble}: expected an integer >= 1")
    if not (args.final_epochs_scale > 0 and math.isfinite(args.final_epochs_scale)):
        raise ConfigError(f"--final-epochs-scale {args.final_epochs_scale}: expected a number > 0")
    if not 0 <= args.final_mixup <= 10:  # also refuses nan
        raise ConfigError(f"--final-mixup {args.final_mixup}: expected a number in [0, 10] (0: no mixup)")
    for normalization in args.final_inputs:
        if normalization not in NORMALIZATIONS:
            raise ConfigError(f"--final-inputs {normalization!r}: expected one of {', '.join(NORMALIZATIONS)}")
    if len(set(args.final_inputs)) < len(args.final_inputs):
        raise ConfigError(f"--final-inputs {' '.join(args.final_inputs)}: a normalization is named twice")
    if args.confirm is not None and (args.confirm < 0 or args.confirm == 1):
        raise ConfigError(f"--confirm {args.confirm}: expected 0 (no confirmation) or an integer >= 2")
    if args.confirm_folds < 2:
        raise ConfigError(f"--confirm-folds {args.confirm_folds}: expected an integer >= 2")
    if args.resume and args.name is None:
        raise ConfigError("--resume needs --name NAME: the run to continue")
    time_budget_of(args.time_budget)
    if args.init is not None:
        from fer_core.transfer import read_init_card as read_card

        if args.points is not None:
            raise ConfigError("--points with --init: points are configs of the from-scratch space; give one or the "
                              "other")
        read_card(args.init)


def restore_args(args: argparse.Namespace, run_dir: Path) -> argparse.Namespace:
    """On --resume, take the run-defining arguments from the run's ``run.json``."""
    saved = read_state(run_dir)["args"]
    for key in RUN_DEFINING:
        setattr(args, key, saved[key] if key in saved else RUN_DEFINING_BEFORE[key])
    return args


def run_settings(args: argparse.Namespace) -> RunSettings:
    """The checked flags as the stages' settings; reads and checks ``--points``, loads ``--init``.

    A fine-tuned network keeps the input normalization it was trained with, so with
    ``--init`` the final members use that one."""
    from search.points import read_points

    resources = Resources(args.cpus_per_trial, args.gpus_per_trial)
    init = None
    if args.init is not None:
        from fer_core.transfer import load_pretrained

        init = load_pretrained(args.init)
    inputs = (init.config.normalize,) if init else tuple(args.final_inputs)
    return RunSettings(
        search=SearchSettings(trials=args.trials, max_epochs=args.max_epochs, metric=args.metric, seed=args.seed,
                              sampler=args.sampler, scheduler=args.scheduler,
                              points=tuple(read_points(args.points)), resources=resources, init=init,
                              round_images=args.round_images, cost_weight=args.cost_weight),
        confirm=ConfirmSettings(configs=args.confirm, folds=args.confirm_folds, seed=args.seed, metric=args.metric),
        final=FinalSettings(ensemble=args.ensemble, epochs_scale=args.final_epochs_scale, mixup=args.final_mixup,
                            inputs=inputs),
        time_budget_s=time_budget_of(args.time_budget if args.time_budget or args.data != FIRST_RUN_DATA
                                     else FIRST_RUN_BUDGET),
        small_data_budget_s=parse_duration(SMALL_DATA_BUDGET) if args.time_budget is None else None)
