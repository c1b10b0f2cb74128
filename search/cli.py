"""The command line of ``python -m search.run``: parsed, checked, and turned into one :class:`Command`.

The parser and the README's flag table (:func:`flag_table`) are both made from
:data:`search.settings.FLAGS`. Every value is checked before anything starts, naming the flag
and what was expected; on ``--resume`` the flags that define a run come from its
``run.json``. Nothing below this module sees the argparse namespace.
"""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

from fer_core.config import NORMALIZATIONS
from fer_core.errors import ConfigError
from fer_core.transfer import load_pretrained, read_init_card
from search.rundir import prepare_run_dir, read_state
from search.settings import (FIRST_RUN_BUDGET, FIRST_RUN_DATA, FLAGS, NO_BUDGET, SMALL_DATA_BUDGET, ConfirmSettings,
                             FinalSettings, Resources, RunSettings, SearchSettings)
from search.tuning.points import read_points

DESCRIPTION = "find the best CNN for a facial-expression data set"
RUN_DEFINING = tuple(flag.dest for flag in FLAGS if flag.defines_run)  # what --resume takes from run.json


@dataclass(frozen=True)
class Command:
    """A checked command line: what the run computes (``settings``), on which data, where it
    writes, on which cluster; ``defining``: the run-defining flags as ``run.json`` keeps them."""

    settings: RunSettings
    data: str
    split: str
    faces: str
    output: str
    name: str
    run_dir: Path
    resume: bool
    address: Optional[str]
    defining: dict[str, Any]
    budget_given: bool


def build_parser(parser: type[argparse.ArgumentParser] = argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The flags of :data:`search.settings.FLAGS`, their defaults and help; ``parser``: the class
    that reports mistakes."""
    p = parser(prog="python -m search.run", description=f"FER Tune: {DESCRIPTION}.")
    for flag in FLAGS:
        text = re.sub(r"\[([^]]+)\]\([^)]+\)", r'"\1" in the README', flag.help).replace("`", "")
        text = f"{text} (default: {flag.default_text.replace('`', '')})".replace("%", "%%")
        if flag.type is bool or isinstance(flag.default, bool):
            p.add_argument(flag.name, action="store_true", help=text)
            continue
        p.add_argument(flag.name, type=flag.type, default=flag.default, nargs=flag.nargs, metavar=flag.metavar,
                       help=text)
    return p


def flag_table() -> str:
    """The README's table of flags, made from the same :data:`search.settings.FLAGS` as ``--help``."""
    rows = [f"| `{flag.name}` | {flag.default_text} | {flag.help} |" for flag in FLAGS]
    return "\n".join(["| flag | default | meaning |", "|---|---|---|", *rows])


def parse(argv: Optional[list[str]] = None) -> Command:
    """The command line as a checked :class:`Command`; a bad value raises :class:`ConfigError`."""
    args = build_parser().parse_args(argv)
    check_args(args)
    name = args.name or datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = prepare_run_dir(args.output, name, args.resume)
    defining = {key: getattr(args, key) for key in RUN_DEFINING}
    if args.resume:
        saved = read_state(run_dir)["args"]
        defining = {flag.dest: saved.get(flag.dest, flag.before) for flag in FLAGS if flag.defines_run}
        args = argparse.Namespace(**(vars(args) | defining))
    return Command(settings=run_settings(args), data=args.data, split=args.split, faces=args.faces,
                   output=args.output, name=name, run_dir=run_dir, resume=args.resume, address=args.address,
                   defining=defining, budget_given=args.time_budget is not None)


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
    for flag in FLAGS:
        if flag.choices and getattr(args, flag.dest) not in flag.choices:
            raise ConfigError(f"{flag.name} {getattr(args, flag.dest)!r}: expected one of {', '.join(flag.choices)}")
    for name, value, least in (("--trials", args.trials, 1), ("--max-epochs", args.max_epochs, 1),
                               ("--ensemble", args.ensemble, 1), ("--confirm-folds", args.confirm_folds, 2)):
        if value < least:
            raise ConfigError(f"{name} {value}: expected an integer >= {least}")
    if not 0 <= args.cost_weight <= 10:  # also refuses nan
        raise ConfigError(f"--cost-weight {args.cost_weight}: expected a number in [0, 10] (0: accuracy alone)")
    if args.round_images is not None and args.round_images < 0:
        raise ConfigError(f"--round-images {args.round_images}: expected an integer >= 0 (0: an epoch is a pass)")
    if not (args.cpus_per_trial > 0 and math.isfinite(args.cpus_per_trial)):
        raise ConfigError(f"--cpus-per-trial {args.cpus_per_trial}: expected a number > 0")
    if not (args.gpus_per_trial >= 0 and math.isfinite(args.gpus_per_trial)):
        raise ConfigError(f"--gpus-per-trial {args.gpus_per_trial}: expected a number >= 0")
    if args.name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", args.name):
        raise ConfigError(f"--name {args.name!r}: expected letters, digits, '.', '_' or '-'")
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
    if args.resume and args.name is None:
        raise ConfigError("--resume needs --name NAME: the run to continue")
    time_budget_of(args.time_budget)
    folds_of_arg(args.folds)
    if args.init is not None:
        if args.points is not None:
            raise ConfigError("--points with --init: points are configs of the from-scratch space; give one or the "
                              "other")
        read_init_card(args.init)


def folds_of_arg(text: Optional[str]) -> Optional[int | str]:
    """``--folds`` as a number of folds (>= 2) or ``"loso"``; None when it is not given."""
    if text is None or str(text).strip().lower() == "loso":
        return None if text is None else "loso"
    try:
        folds = int(text)
    except ValueError:
        folds = 0
    if folds < 2:
        raise ConfigError(f"--folds {text!r}: expected a number of folds >= 2, or loso (one per subject)")
    return folds


def run_settings(args: argparse.Namespace) -> RunSettings:
    """The checked flags as the stages' settings; reads and checks ``--points``, loads ``--init``.

    A fine-tuned network keeps the input normalization it was trained with, so with
    ``--init`` the final members use that one."""
    resources = Resources(args.cpus_per_trial, args.gpus_per_trial)
    init = load_pretrained(args.init) if args.init is not None else None
    inputs = (init.config.normalize,) if init else tuple(args.final_inputs)
    return RunSettings(
        search=SearchSettings(trials=args.trials, max_epochs=args.max_epochs, metric=args.metric, seed=args.seed,
                              sampler=args.sampler, scheduler=args.scheduler, prior=args.prior,
                              points=tuple(read_points(args.points)), resources=resources, init=init,
                              round_images=args.round_images, cost_weight=args.cost_weight),
        confirm=ConfirmSettings(configs=args.confirm, folds=args.confirm_folds, seed=args.seed, metric=args.metric),
        final=FinalSettings(ensemble=args.ensemble, epochs_scale=args.final_epochs_scale, mixup=args.final_mixup,
                            inputs=inputs),
        folds=folds_of_arg(args.folds),
        time_budget_s=time_budget_of(args.time_budget if args.time_budget or args.data != FIRST_RUN_DATA
                                     else FIRST_RUN_BUDGET),
        small_data_budget_s=parse_duration(SMALL_DATA_BUDGET) if args.time_budget is None else None)
