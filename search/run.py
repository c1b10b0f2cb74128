"""``python -m search.run``: find the best CNN for a facial-expression data set.

The story, top to bottom: check the command line and the data (bad input is one line
and exit status 2, before anything starts); hold out the test split once; put the train
and validation parts in Ray's object store; run a Tune search (Optuna TPE, the seed's
recipe first, ASHA stopping trials that trail the recent ones) whose every trial is a
``fer_core`` training; confirm the leading configs by cross-validation over train +
validation (``search/confirm.py``), which ranks them; retrain the best configs and the
seed's recipe on train + validation as Ray tasks; join the best into one model (their probabilities averaged,
each also shown the mirror image) and test it and the seed's recipe on the held-out split; export it; write the report.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, Optional

from fer_core.config import NORMALIZATIONS
from fer_core.data import Dataset, load
from fer_core.splits import SPLITS, Splits, make_splits
from fer_core.errors import ConfigError, FerInputError, run_cli
from search.confirm import BUDGET_SHARE, DEFAULT_CONFIRM, DEFAULT_FOLDS

log = logging.getLogger("search.run")

METRICS = ("val_accuracy", "val_macro_f1")
RUN_FILE = "run.json"  # the run's arguments, so that --resume continues the same search
TUNE_DIR = "tune"  # Ray Tune's own experiment folder inside the run folder
TENSORBOARD_DIR = "tensorboard"
BEST_DIR = "best"
EXPERIMENT_SAVE_PERIOD_S = "2"  # how often Tune saves its state: a killed driver loses at most this much
EXIT_INTERRUPTED = 130  # the shell's status for a run stopped by Ctrl-C
ASHA_REDUCTION_FACTOR = 3
STARTUP_SHARE = 0.4  # a time budget's search time sampled at random first, as two fifths of the trials are
STARTUP_CAP = 20
ASHA_GRACE_SHARE = 0.2  # first rung at a fifth of the epoch budget (3 of 16), the next at 3x that
ASHA_WINDOW = 9  # a trial at a rung is judged against the last 9 trials that reached it ...
ASHA_KEEP = 0.25  # ... and goes on if among their best quarter (search/scheduler.py)
TRIAL_RETRIES = 2
# The final model averages the 5 best configs. On CK+ (subject split; two searches, each
# retrained at 3 training seeds) 5 members beat 3 in 4 of the 6 pairs (1 tie), by 0.8 points on average.
DEFAULT_ENSEMBLE = 5
# The final members train for this many times their trial's epochs (on train + validation).
# A trial's budget is kept short for the search's sake; on CK+ (subject split, the 5 best configs
# of two searches, trained on train and scored on validation at a seed no trial used) twice
# the epochs raised the members' mean validation accuracy. Three times raised the 5-member
# ensembles of two other searches by 0.8 points each over twice, by 3-fold subject
# cross-validation of train + validation (experiments.final_recipe --scales 2 3 --folds 3;
# see experiments/README.md); four times added 0.2 more on one of them.
DEFAULT_FINAL_EPOCHS_SCALE = 3.0
# --final-mixup: off by default. On CK+ (subject split, two searches' 5 best configs at three
# times their epochs) mixup at Beta(0.2, 0.2) raised the 5-member ensembles by 1.4 and 0.8
# points in 3-fold subject cross-validation of train + validation (experiments.final_recipe
# --variant mixup:mixup=0.2), but those searches' final models scored 2.0 and 1.6 points lower
# on test with it than without (a third search's 1.5 higher): too mixed to change the default.
DEFAULT_FINAL_MIXUP = 0.0
# --final-inputs: each final config trains once per input normalization named, all averaged.
# The trials all see standardized faces (search/space.py); histogram-equalized faces are a second
# view of the same face. On CK+ (subject split, a search's 5 best configs at three times their
# epochs, 3-fold subject cross-validation of train + validation, experiments.final_recipe
# --variant eq:normalize=equalize) the 10 networks of both inputs averaged scored 91.3% / macro-F1
# 0.866 against 90.2% / 0.844 for the 5 standardized ones. On test, two searches' final models
# scored 0.0 and 0.5 points more with both inputs than with one (92.8% and 91.3% with one), and the
# retrain takes twice as long, which pushes a 50-trial CK+ run past 30 minutes: so one input by default.
DEFAULT_FINAL_INPUTS = ("standardize",)
# A trial's epoch budget. 16, not the seed's 20: on CK+ (50 trials, subject split) 16 gave the
# same test accuracy (90.8%, F1 0.858 against 0.851) in 1661 s of search against 1999 s.
DEFAULT_MAX_EPOCHS = 16
TRIAL_STOP_WAIT_S = 600  # longest epoch a stopped trial may finish before its worker is reused  # a trial whose node or worker dies is retried from its last checkpoint
# A final member that did not learn (see member_learned) is retrained once at its seed plus
# this; if it fails again it leaves the ensemble. On CK+ (seed 1) a member whose trial scored
# 91.7% on validation predicted a single class after its retrain: 24.6% on test.
RESEED_OFFSET = 1000
# the arguments that define a run; --resume takes them from run.json, not the command line
RUN_DEFINING = ("data", "split", "trials", "max_epochs", "metric", "seed", "cpus_per_trial", "gpus_per_trial",
                "points", "confirm", "confirm_folds", "sampler", "scheduler")
# run-defining arguments added since the first runs: a run.json without them ran without confirmation,
# with the random start, under the recent-trials ASHA
SAMPLERS = ("startup", "tpe")  # the first is the default: search/sampler.py's random start, then TPE
SCHEDULERS = ("asha", "hyperband")  # the first is the default: search/scheduler.py's ASHA against recent trials
RUN_DEFINING_BEFORE = {"confirm": 0, "confirm_folds": 3, "sampler": SAMPLERS[0], "scheduler": SCHEDULERS[0]}


# ----------------------------------------------------------------------------- command line

def parse_args(argv: Optional[list[str]], parser: type[argparse.ArgumentParser] = argparse.ArgumentParser
               ) -> argparse.Namespace:
    """The command line; values are checked by :func:`check_args`. ``parser``: the class that reports mistakes."""
    p = parser(prog="python -m search.run", description=__doc__.split("\n")[0])
    p.add_argument("--trials", type=int, default=50, help="number of trials (default 50)")
    p.add_argument("--data", default="synthetic",
                   help="CK+/FER2013 CSV, folder of class folders, or synthetic[:N] (default: the synthetic set)")
    p.add_argument("--split", default="auto", help=f"held-out test split: {', '.join(SPLITS)} (default auto)")
    p.add_argument("--max-epochs", type=int, default=DEFAULT_MAX_EPOCHS,
                   help=f"epoch budget of one trial, both phases (default {DEFAULT_MAX_EPOCHS})")
    p.add_argument("--metric", default="val_accuracy", help=f"what the search maximises: {', '.join(METRICS)}")
    p.add_argument("--points", default=None,
                   help="JSON file of configs to try first, after the seed's recipe (a dict or a list of dicts)")
    p.add_argument("--ensemble", type=int, default=DEFAULT_ENSEMBLE,
                   help=f"the final model averages this many of the best trials' configs (default {DEFAULT_ENSEMBLE})")
    p.add_argument("--final-epochs-scale", type=float, default=DEFAULT_FINAL_EPOCHS_SCALE,
                   help="the final members train for this many times their trial's epochs "
                        f"(default {DEFAULT_FINAL_EPOCHS_SCALE:g})")
    p.add_argument("--final-mixup", type=float, default=DEFAULT_FINAL_MIXUP,
                   help="the final members also train with mixup of this Beta parameter "
                        f"(default {DEFAULT_FINAL_MIXUP:g}: off, as in their trials)")
    p.add_argument("--final-inputs", nargs="+", default=list(DEFAULT_FINAL_INPUTS), metavar="NORMALIZATION",
                   help="each final config trains once per input normalization named, and the final model "
                        f"averages them all: {', '.join(NORMALIZATIONS)} (default: "
                        f"{' '.join(DEFAULT_FINAL_INPUTS)}, the trials' own input; e.g. standardize equalize)")
    p.add_argument("--confirm", type=int, default=DEFAULT_CONFIRM,
                   help="after the search, cross-validate this many of the best configs over train + validation "
                        f"and pick the final members by that (default {DEFAULT_CONFIRM}; 0: by validation alone)")
    p.add_argument("--confirm-folds", type=int, default=DEFAULT_FOLDS,
                   help="folds of that cross-validation, by subject where there are subject ids "
                        f"(default {DEFAULT_FOLDS})")
    p.add_argument("--sampler", default=SAMPLERS[0],
                   help="startup (default): random for two fifths of the search, then multivariate TPE; "
                        "tpe: Optuna's TPESampler as it comes (10 random trials, then TPE per parameter)")
    p.add_argument("--scheduler", default=SCHEDULERS[0],
                   help="asha (default): stop a trial at epochs 3 and 9 of 16 unless among the best quarter of "
                        "the last 9 trials there; hyperband: Ray's asynchronous Hyperband with the brackets of "
                        "Optuna's HyperbandPruner (rungs from epoch 1, each trial's bracket drawn at random)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampler and of training (default 0)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs per trial, and TF threads (default 1)")
    p.add_argument("--gpus-per-trial", type=float, default=0.0, help="GPUs per trial (default 0)")
    p.add_argument("--time-budget", default=None,
                   help="stop starting trials after this long, e.g. 30m, 2h, 90s; with --confirm the search "
                        f"stops starting trials at {100 * (1 - BUDGET_SHARE):.0f}%% of it and the confirmation fits in "
                        "the rest")
    p.add_argument("--address", default=None, help="address of a running Ray cluster (default: start a local one)")
    p.add_argument("--output", default="runs", help="folder of runs (default runs/)")
    p.add_argument("--name", default=None, help="name of this run (default: a timestamp)")
    p.add_argument("--resume", action="store_true", help="continue the run --name in --output")
    return p.parse_args(argv)


def parse_duration(text: Optional[str]) -> Optional[float]:
    """``30m``, ``2h``, ``90s`` or plain seconds, as seconds; None stays None."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(text))
    if not match or float(match.group(1)) <= 0:
        raise ConfigError(f"--time-budget {text!r}: expected a positive duration like 90s, 30m or 2h")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def check_args(args: argparse.Namespace) -> None:
    """Refuse bad values before anything starts, naming the flag and what was expected."""
    if args.trials < 1:
        raise ConfigError(f"--trials {args.trials}: expected an integer >= 1")
    if args.max_epochs < 1:
        raise ConfigError(f"--max-epochs {args.max_epochs}: expected an integer >= 1")
    if args.split not in SPLITS:
        raise ConfigError(f"--split {args.split!r}: expected one of {', '.join(SPLITS)}")
    if args.metric not in METRICS:
        raise ConfigError(f"--metric {args.metric!r}: expected one of {', '.join(METRICS)}")
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
    if args.sampler not in SAMPLERS:
        raise ConfigError(f"--sampler {args.sampler!r}: expected one of {', '.join(SAMPLERS)}")
    if args.scheduler not in SCHEDULERS:
        raise ConfigError(f"--scheduler {args.scheduler!r}: expected one of {', '.join(SCHEDULERS)}")
    if args.confirm < 0 or args.confirm == 1:
        raise ConfigError(f"--confirm {args.confirm}: expected 0 (no confirmation) or an integer >= 2")
    if args.confirm_folds < 2:
        raise ConfigError(f"--confirm-folds {args.confirm_folds}: expected an integer >= 2")
    if args.resume and args.name is None:
        raise ConfigError("--resume needs --name NAME: the run to continue")
    parse_duration(args.time_budget)
    read_points(args.points)


def output_path(text: str) -> Path:
    """``--output`` as a local folder: a path, or a ``file://`` URI as Ray's storage writes them.

    Other storage URIs (``s3://``, ``gs://``) are refused in one line: the report, the
    exported model and TensorBoard's files are written with local file operations.
    """
    scheme, sep, rest = text.partition("://")
    if sep and scheme != "file":
        raise ConfigError(f"--output {text!r}: storage URIs other than file:// are not supported; "
                          "expected a folder every Ray node sees (a shared file system)")
    return Path(rest if sep else text).expanduser().resolve()


def prepare_run_dir(args: argparse.Namespace) -> Path:
    """Check the output folder before the search; return the run folder (not created yet).

    A new run must not overwrite an old one; a resumed run must exist. The output folder
    must be writable, checked by writing into it, so that a search is never started only
    to fail when its first result is saved.
    """
    output = output_path(args.output)
    run_dir = output / args.name
    if args.resume:
        if not (run_dir / RUN_FILE).is_file():
            raise ConfigError(f"--resume: no run {args.name!r} in {output} (expected {run_dir / RUN_FILE})")
    elif run_dir.exists():
        raise ConfigError(f"--name {args.name!r}: {run_dir} exists; pass --resume to continue it, or another --name")
    probe_dir = output
    while not probe_dir.exists():
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir() or not os.access(probe_dir, os.W_OK | os.X_OK):
        raise ConfigError(f"--output {args.output!r}: {probe_dir} is not a writable folder")
    return run_dir


def read_points(path: Optional[str]) -> list[dict[str, Any]]:
    """The warm-start configs of ``--points``, each completed with the seed's values.

    Keys are the search space's parameter names (``TrainConfig`` fields and
    ``augment``); a typo or a bad value is an error naming the file and the point.
    """
    from fer_core.config import TrainConfig
    from search.space import define_space, seed_point, to_config

    if path is None:
        return []
    try:
        loaded = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"--points {path}: cannot read ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--points {path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    points = [loaded] if isinstance(loaded, dict) else loaded
    if not isinstance(points, list) or not all(isinstance(p, dict) for p in points):
        raise ConfigError(f"--points {path}: expected a JSON object or a list of objects")
    seed = seed_point()
    known = set(seed) | {f for f in TrainConfig().to_dict() if f != "epochs"}
    completed = []
    for i, point in enumerate(points, start=1):
        unknown = sorted(set(point) - known)
        if unknown:
            raise ConfigError(f"--points {path}, point {i}: unknown parameter(s) {', '.join(unknown)}")
        merged = {**seed, **{k: v for k, v in point.items() if k in known}}
        try:
            to_config(merged)
            trial = _point_trial(merged)
            held = define_space(trial, max_epochs=1)
        except ConfigError as exc:
            raise ConfigError(f"--points {path}, point {i}: {exc}") from None
        # the config the trial trains with, built as the trainable builds it: from the sample and the
        # space's constants alone, so a field the space leaves out takes TrainConfig's default
        runs_with = to_config({**trial.params, **held}).to_dict()
        for name, value in point.items():
            if name in runs_with and value != runs_with[name]:
                log.warning("--points %s, point %d: %s=%r is held at %r by the search space", path, i, name,
                            value, runs_with[name])
        completed.append(merged)
    return completed


def _point_trial(params: dict[str, Any]):
    """An Optuna ``FixedTrial`` of ``params`` whose choice outside the space is a ConfigError naming it."""
    import optuna

    class PointTrial(optuna.trial.FixedTrial):
        def suggest_categorical(self, name, choices):
            if params.get(name) not in choices:
                raise ConfigError(f"{name}={params.get(name)!r} is not among the search space's choices "
                                  f"{', '.join(map(repr, choices))}")
            return super().suggest_categorical(name, choices)

    return PointTrial(params)


def restore_args(args: argparse.Namespace, run_dir: Path) -> argparse.Namespace:
    """On --resume, take the run-defining arguments from the run's ``run.json``."""
    saved = json.loads((run_dir / RUN_FILE).read_text())
    for key in RUN_DEFINING:
        setattr(args, key, saved["args"][key] if key in saved["args"] else RUN_DEFINING_BEFORE[key])
    return args


# ----------------------------------------------------------------------------- the search

def build_searcher(args: argparse.Namespace, budget_s: Optional[float]):
    """Optuna TPE over :func:`search.space.define_space` after a random start
    (:mod:`search.sampler`; ``--sampler tpe``: Optuna's own), the seed's recipe and ``--points``
    enqueued first."""
    from optuna.samplers import TPESampler

    from search.budget import BudgetedOptunaSearch
    from search.sampler import StartupSampler
    from search.space import define_space, seed_point

    now = time.time()
    if args.sampler == "tpe":
        sampler = TPESampler(seed=args.seed)
    else:
        sampler = StartupSampler(n_startup=startup_trials(args.trials), seed=args.seed, multivariate=True,
                                 group=True, random_until=now + budget_s * STARTUP_SHARE if budget_s else None)
    return BudgetedOptunaSearch(space=partial(define_space, max_epochs=args.max_epochs), metric=args.metric,
                                mode="max", points_to_evaluate=[seed_point(), *read_points(args.points)],
                                sampler=sampler, deadline=now + budget_s if budget_s else None)


def startup_trials(trials: int) -> int:
    """Random trials before TPE models the results: two fifths of the search, at most 20.

    Random trials are cheap (the poor ones stop at the first rung, 3 epochs) and the only
    protection against a start that misleads TPE: with 10 random trials a CK+ search at
    seed 2 found one fair configuration among them and never left its neighbourhood.
    Under ``--time-budget`` the random start also ends at two fifths of the search's time."""
    return max(1, min(STARTUP_CAP, trials * 2 // 5))


def build_scheduler(args: argparse.Namespace):
    """ASHA's rungs (3 and 9 of 16 epochs), each judging a trial against the recent trials there.

    ``--scheduler hyperband``: Ray's asynchronous Hyperband set as the Optuna-alone arm of
    ``experiments.compare_tuners`` sets Optuna's ``HyperbandPruner`` (rungs at 1, 3, 9, ...
    epochs, reduction factor 3): one bracket per rung a trial may start being judged at, each
    keeping the best third of all the trials that reached a rung in it."""
    from ray.tune.schedulers import AsyncHyperBandScheduler
    from search.scheduler import RecentASHAScheduler

    if args.scheduler == "hyperband":
        brackets = 1
        while ASHA_REDUCTION_FACTOR ** brackets < args.max_epochs:  # bracket s first judges at rf^s epochs
            brackets += 1
        return AsyncHyperBandScheduler(metric=args.metric, mode="max", max_t=args.max_epochs, grace_period=1,
                                       reduction_factor=ASHA_REDUCTION_FACTOR, brackets=brackets)
    return RecentASHAScheduler(metric=args.metric, mode="max", max_t=args.max_epochs,
                               grace_period=max(1, round(args.max_epochs * ASHA_GRACE_SHARE)),
                               reduction_factor=ASHA_REDUCTION_FACTOR, window=ASHA_WINDOW, keep=ASHA_KEEP)


def run_search(args: argparse.Namespace, run_dir: Path, splits: Splits, budget_s: Optional[float]):
    """Run (or resume) the Tune search; return Tune's ExperimentAnalysis of all trials."""
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
    from search.space import seed_point
    from search.tensorboard import TensorBoardCallback, write_hparams_config
    from search.trainable import SearchData, train_trial

    threads = max(1, int(args.cpus_per_trial))
    trainable = tune.with_resources(
        tune.with_parameters(train_trial, data=SearchData(splits.train, splits.val), threads=threads),
        {"cpu": args.cpus_per_trial, "gpu": args.gpus_per_trial})
    tune_path = run_dir / TUNE_DIR
    if args.resume and tune.Tuner.can_restore(str(tune_path)):
        log.info("resuming %s: finished trials are kept", tune_path)
        tuner = tune.Tuner.restore(str(tune_path), trainable, resume_unfinished=True, resume_errored=False)
    else:
        write_hparams_config(run_dir / TENSORBOARD_DIR, [*seed_point(), "epochs"])
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                num_samples=args.trials, trial_dirname_creator=_trial_dirname,
                reuse_actors=True,  # a worker keeps TensorFlow loaded from one trial to the next
                search_alg=build_searcher(args, budget_s),
                scheduler=build_scheduler(args),
            ),
            run_config=tune.RunConfig(
                name=TUNE_DIR, storage_path=str(run_dir),
                callbacks=[TensorBoardCallback(run_dir / TENSORBOARD_DIR), CSVLoggerCallback(), JsonLoggerCallback()],
                failure_config=tune.FailureConfig(max_failures=TRIAL_RETRIES),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                progress_reporter=_progress_table(args.metric),
                verbose=1,
            ),
        )
    tuner.fit()
    return tune.ExperimentAnalysis(str(tune_path))


# ----------------------------------------------------------------------------- after the search

def retrain_and_test(configs: dict[str, dict], splits: Splits, args: argparse.Namespace,
                     mirror: dict[str, bool] | None = None) -> dict[str, dict]:
    """Train each named config on train + validation and test it, as parallel Ray tasks.

    Each task has the resources of one trial, so a GPU node serves it when trials use
    GPUs. ``mirror`` says, by name, whether the test also averages each face's mirror
    image (default yes). Returns, by name: ``weights``, ``history``, the test
    ``metrics`` and the test ``probabilities``; or, for a training whose loss stopped
    being finite, only ``diverged`` (the reason), so one such config does not cost the others.
    """
    import ray

    from fer_core.train import TrainingDiverged

    mirror = mirror or {}
    task = ray.remote(_retrain_task).options(num_cpus=args.cpus_per_trial, num_gpus=args.gpus_per_trial)
    train_all = splits.train.concat(splits.val)
    refs = {name: task.remote(config, train_all, splits.test, max(1, int(args.cpus_per_trial)),
                              mirror=mirror.get(name, True))
            for name, config in configs.items()}
    results = {}
    for name, ref in refs.items():
        try:
            results[name] = ray.get(ref)
        except TrainingDiverged as exc:  # Ray re-raises the task's error as an instance of its class
            results[name] = {"diverged": str(exc).strip().splitlines()[-1]}
    return results


def member_learned(history: list[dict], trial_history: list[dict], majority: float) -> bool:
    """Whether a final member's training went as its trial's did, judged without the test split.

    Its last epoch's training accuracy must cover at least half of the way from the
    majority-class share of its training data to its trial's last training accuracy; a
    member that settles on one class stays near the majority share. A trial that itself
    learned nothing sets no bar.
    """
    final = history[-1].get("train_accuracy") if history else None
    if not isinstance(final, (int, float)) or not math.isfinite(final):
        return False
    trial = trial_history[-1].get("train_accuracy") if trial_history else None
    trial = trial if isinstance(trial, (int, float)) and math.isfinite(trial) else 1.0
    return trial <= majority or final - majority >= 0.5 * (trial - majority)


def retrain_members(members: list[dict], configs: list, splits: Splits, args: argparse.Namespace,
                    extra: dict[str, dict] | None = None) -> tuple[list[dict], list[dict], dict]:
    """Retrain the final members (and the ``extra`` named configs, alongside) on train + validation.

    A member that diverged, or did not learn (:func:`member_learned`), is retrained once at
    its seed plus :data:`RESEED_OFFSET`; if that fails too it is dropped. When no member
    learned at all, the ones that produced weights are kept rather than export nothing.
    Returns ``(kept, dropped, extra_results)``: kept best first, each a dict of ``trial``,
    the ``config`` it trained with, its ``result`` and its ``attempts`` (1 or 2); dropped as
    ``{"trial_id", "reason", "seeds"}`` (the seeds it trained at).
    """
    import dataclasses

    import numpy as np

    from fer_core.train import TrainingDiverged

    labels = splits.train.concat(splits.val).labels
    majority = float(np.bincount(labels).max() / len(labels)) if len(labels) else 0.0
    names = [f"member{i}" for i in range(len(members))]
    first = retrain_and_test({**{n: c.to_dict() for n, c in zip(names, configs)}, **(extra or {})},
                             splits, args, mirror={name: False for name in extra or {}})
    outcome = {n: (m, c, first[n]) for n, m, c in zip(names, members, configs)}

    def failure(trial: dict, result: dict) -> Optional[str]:
        if "diverged" in result:
            return f"diverged ({result['diverged']})"
        if not member_learned(result["history"], trial.get("history") or [], majority):
            accuracy = result["history"][-1].get("train_accuracy") if result["history"] else float("nan")
            return f"did not learn (final training accuracy {accuracy:.3f}, majority class {majority:.3f})"
        return None

    retry = {n: f for n, (m, _, r) in outcome.items() if (f := failure(m, r))}
    if retry:
        for name, reason in retry.items():
            log.warning("final member %s (trial %s) %s; retraining it at another seed",
                        name, outcome[name][0]["trial_id"], reason)
        reseeded = {n: dataclasses.replace(outcome[n][1], seed=outcome[n][1].seed + RESEED_OFFSET) for n in retry}
        second = retrain_and_test({n: c.to_dict() for n, c in reseeded.items()}, splits, args)
        for name, config in reseeded.items():
            outcome[name] = (outcome[name][0], config, second[name])
    reasons = {n: failure(m, r) for n, (m, _, r) in outcome.items()}
    keep = [n for n in names if not reasons[n]]
    if not keep:
        keep = [n for n in names if "diverged" not in outcome[n][2]]
        if not keep:
            raise TrainingDiverged("every final member diverged, twice: " + "; ".join(map(str, reasons.values())))
        log.warning("no final member learned; keeping the %d that trained", len(keep))
    kept = [{"trial": outcome[n][0], "config": outcome[n][1], "result": outcome[n][2],
             "attempts": 2 if n in retry else 1} for n in keep]
    dropped = [{"trial_id": outcome[n][0]["trial_id"], "normalize": configs[i].normalize, "reason": reasons[n],
                "seeds": [configs[i].seed] + ([outcome[n][1].seed] if n in retry else [])}
               for i, n in enumerate(names) if n not in keep]
    for row in dropped:
        log.warning("final member from trial %s dropped: %s", row["trial_id"], row["reason"])
    return kept, dropped, {name: first[name] for name in extra or {}}


def _retrain_task(config: dict, train: Dataset, test: Dataset, threads: int, mirror: bool = True,
                  weights: bool = True) -> dict:
    """Train ``config`` on ``train`` (its full epoch budget, no validation) and test it.

    The result has the network's ``weights`` (unless ``weights`` is false), its
    ``history``, the test ``probabilities`` and ``metrics``."""
    from fer_core.config import TrainConfig
    from fer_core.evaluate import evaluate_predictions
    from fer_core.model import build_predictor
    from fer_core.train import fit, predict_proba

    model, history = fit(TrainConfig.from_dict(config), train, threads=threads)
    probabilities = predict_proba(build_predictor([model], mirror=mirror), test.images)
    return {"weights": model.get_weights() if weights else None, "history": history, "probabilities": probabilities,
            "metrics": evaluate_predictions(test.labels, probabilities.argmax(axis=1), test.class_names)}


def final_config(params: dict, epochs_scale: float, mixup: float = 0.0, normalize: Optional[str] = None):
    """The config a final member trains with: the trial's, for ``epochs_scale`` times its
    epochs, with ``mixup`` (its Beta parameter; 0 leaves the trial's setting) and input
    ``normalize`` (None leaves the trial's)."""
    import dataclasses

    from search.space import to_config

    config = to_config(params)
    config = dataclasses.replace(config, epochs=max(1, round(config.epochs * epochs_scale)))
    config = dataclasses.replace(config, mixup=mixup) if mixup else config
    return dataclasses.replace(config, normalize=normalize) if normalize else config


def final_networks(members: list[dict], args: argparse.Namespace) -> tuple[list[dict], list]:
    """The final model's networks: each member config once per ``--final-inputs``
    normalization, member by member. Returns the trials (repeated) and their configs."""
    trials, configs = [], []
    for trial in members:
        for normalization in args.final_inputs:
            trials.append(trial)
            configs.append(final_config(trial["config"], args.final_epochs_scale, args.final_mixup, normalization))
    return trials, configs


def pick_ensemble(trials: list[dict], size: int) -> list[dict]:
    """The ``size`` best trials to retrain, best first: by final metric, preferring trials
    that ran their whole budget; configs that are the same are taken once.

    Ties (on 156 validation faces many trials share an accuracy) go to the lower final
    validation loss, then to the trial id, so the pick does not depend on the order in
    which Tune lists the trials (which differs after ``--resume``).
    """
    def rank(trial: dict) -> tuple:
        loss = trial["history"][-1].get("val_loss") if trial.get("history") else None
        loss = loss if isinstance(loss, (int, float)) and math.isfinite(loss) else math.inf
        return trial["status"] == "completed", trial["final_metric"], -loss, trial["trial_id"]

    scored = [t for t in trials if t["status"] in ("completed", "stopped_early") and t["final_metric"] is not None]
    scored.sort(key=rank, reverse=True)
    picked: list[dict] = []
    for trial in scored:
        if all(trial["config"] != other["config"] for other in picked):
            picked.append(trial)
        if len(picked) == size:
            break
    return picked


def search_budget(args: argparse.Namespace, budget_s: Optional[float]) -> Optional[float]:
    """The search's share of ``--time-budget``: all of it, less the confirmation's share."""
    return budget_s * (1 - BUDGET_SHARE) if budget_s and args.confirm else budget_s


def confirm_best(trials: list[dict], splits: Splits, args: argparse.Namespace, run_dir: Path,
                 deadline: Optional[float] = None):
    """The ``--confirm`` best configs, cross-validated and ranked by it (:mod:`search.confirm`)."""
    from search.confirm import Confirmation, confirm

    if not args.confirm:
        return Confirmation(args.confirm_folds, 0, pick_ensemble(trials, args.ensemble), {}, 0.0, "--confirm 0")
    return confirm(pick_ensemble(trials, args.confirm), splits, args, run_dir, deadline)


def pick_members(trials: list[dict], ranked: list[dict], size: int) -> list[dict]:
    """The ``size`` final members: ``ranked`` first, then the search's next best configs."""
    members = list(ranked[:size])
    for trial in pick_ensemble(trials, size + len(members)):
        if len(members) == size:
            break
        if all(trial["config"] != other["config"] for other in members):
            members.append(trial)
    return members


def pick_best(trials: list[dict]) -> Optional[dict]:
    """The best trial: highest final metric, preferring trials that ran their whole budget."""
    picked = pick_ensemble(trials, 1)
    return picked[0] if picked else None


# ----------------------------------------------------------------------------- main

def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's start-up chatter
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    check_args(args)
    args.name = args.name or datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = prepare_run_dir(args)
    if args.resume:
        args = restore_args(args, run_dir)
    budget_s = parse_duration(args.time_budget)
    if args.address:
        _check_address(args.address)

    if args.data == "synthetic":
        log.info("no --data given: using the built-in synthetic faces (synthetic:1000)")
    clock = time.perf_counter()
    data = load(args.data)
    splits = make_splits(data, args.split)
    timings = {"load_s": time.perf_counter() - clock}
    if args.confirm:  # too few subjects for the folds: say so now, not after the search
        from search.confirm import folds_of

        try:
            folds_of(splits.train.concat(splits.val), args.confirm_folds, args.seed)
        except ConfigError as exc:
            raise ConfigError(f"--confirm-folds {args.confirm_folds}: {exc}") from None
    log.info("data: %s; split %s: %d train, %d validation, %d test", data.describe(), splits.method,
             len(splits.train), len(splits.val), len(splits.test))

    run_dir.mkdir(parents=True, exist_ok=True)
    fingerprint = data.fingerprint()  # hashes every image: once per run
    state = _read_state(run_dir) if args.resume else {"args": {k: getattr(args, k) for k in RUN_DEFINING},
                                                       "fingerprint": fingerprint, "search_seconds": 0.0}
    if state["fingerprint"] != fingerprint:
        raise ConfigError(f"--resume: the data at {args.data} changed since run {args.name} started")
    _write_state(run_dir, state)

    clock = time.perf_counter()
    _start_ray(args.address)
    timings["ray_start_s"] = time.perf_counter() - clock
    started = time.time()
    analysis = run_search(args, run_dir, splits, search_budget(args, budget_s))
    timings["search_s"] = time.time() - started
    state["search_seconds"] += timings["search_s"]
    _write_state(run_dir, state)

    from search.report import trial_record

    import ray

    node_ips = {node["NodeID"]: node["NodeManagerAddress"] for node in ray.nodes()}
    trials = [trial_record(t, args.metric, args.max_epochs, node_ips) for t in analysis.trials]
    unfinished = [t for t in trials if t["status"] == "unfinished"]
    searched_s = search_budget(args, budget_s)
    budget_spent = searched_s is not None and time.time() - started >= searched_s
    if unfinished or (len(trials) < args.trials and not budget_spent):
        log.warning("search interrupted with %d of %d trials finished; continue it with: "
                    "python -m search.run --output %s --name %s --resume",
                    len(trials) - len(unfinished), args.trials, args.output, args.name)
        return EXIT_INTERRUPTED
    if pick_best(trials) is None:
        print(f"search.run: every one of {len(trials)} trials failed; see {run_dir / TUNE_DIR}", file=sys.stderr)
        return 1
    confirmation = confirm_best(trials, splits, args, run_dir, started + budget_s if budget_s else None)
    timings["confirm_s"] = confirmation.seconds
    report = finish(args, run_dir, data, splits, trials, confirmation, state["search_seconds"], timings)
    _print_summary(report, run_dir)
    return 0


def finish(args, run_dir: Path, data: Dataset, splits: Splits, trials: list[dict], confirmation,
           search_seconds: float, timings: dict[str, float]) -> dict:
    """Retrain, test, export, write TensorBoard's final run and the report; return the report."""
    from fer_core.config import TrainConfig
    from fer_core.evaluate import SEED_BASELINE_ACCURACY, evaluate_predictions
    from fer_core.export import export_model
    from fer_core.model import build_cnn, build_predictor
    from fer_core.train import TrainingDiverged, predict_proba
    from search.report import plot_confusion, write_report
    from search.space import to_config
    from search.tensorboard import write_final_run

    members = pick_members(trials, confirmation.ranked, args.ensemble)
    best = confirmation.ranked[0]
    best_config = to_config(best["config"])
    log.info("retraining the %d best configs (trials %s) on %s faces, and the seed's recipe, on train + validation",
             len(members), ", ".join(t["trial_id"] for t in members), " and ".join(args.final_inputs))
    clock = time.perf_counter()
    kept, dropped, extra = retrain_members(*final_networks(members, args), splits, args,
                                           extra={"seed": TrainConfig().to_dict()})
    if "diverged" in extra["seed"]:
        raise TrainingDiverged(f"the seed's recipe diverged in its retrain: {extra['seed']['diverged']}")
    # the final model: the members' probabilities, each on the face and its mirror, averaged
    networks = []
    for i, member in enumerate(kept):
        network = build_cnn(member["config"], splits.train.images.shape[1:], data.n_classes, name=f"member{i}")
        network.set_weights(member["result"]["weights"])
        networks.append(network)
    model = build_predictor(networks, mirror=True)
    probabilities = predict_proba(model, splits.test.images)
    test = evaluate_predictions(splits.test.labels, probabilities.argmax(axis=1), data.class_names)
    seed_test = extra["seed"]["metrics"]
    timings["retrain_s"] = time.perf_counter() - clock

    clock = time.perf_counter()
    export_model(model, run_dir / BEST_DIR, data.class_names, best_config.to_dict(),
                 metrics={f"test_{k}": test[k] for k in ("accuracy", "macro_f1", "balanced_accuracy")}
                 | {"split": splits.method},
                 data_fingerprint=splits.train.concat(splits.val).fingerprint(),
                 extra={"trained_on": f"{data.source}: train + validation of the {splits.method} split",
                        "ensemble": [{"trial_id": m["trial"]["trial_id"], "config": m["config"].to_dict()}
                                     for m in kept],
                        "test_time_augmentation": "mean of each member's probabilities on the image and its "
                                                  "left-right mirror"})
    write_final_run(run_dir / TENSORBOARD_DIR / "final", kept[0]["result"]["history"],
                    data.class_names, plot_confusion(test["confusion_matrix"], data.class_names))
    timings["export_s"] = time.perf_counter() - clock
    report = {
        "name": args.name, "data": data.source, "n_images": len(data), "split": splits.method,
        "n_train": len(splits.train), "n_val": len(splits.val), "n_test": len(splits.test),
        "metric": args.metric, "max_epochs": args.max_epochs, "seed": args.seed,
        "test_accuracy": test["accuracy"], "test_macro_f1": test["macro_f1"],
        "test_balanced_accuracy": test["balanced_accuracy"], "test_accuracy_ci95": test["accuracy_ci95"],
        "majority_accuracy": test["majority_accuracy"], "seed_baseline_accuracy": SEED_BASELINE_ACCURACY,
        "seed_recipe_test_accuracy": seed_test["accuracy"], "seed_recipe_test_macro_f1": seed_test["macro_f1"],
        "trials_completed": sum(t["status"] in ("completed", "stopped_early") for t in trials),
        "trials_stopped_early": sum(t["status"] == "stopped_early" for t in trials),
        "trials_failed": sum(t["status"] == "failed" for t in trials),
        "best_trial_id": best["trial_id"], "best_val_metric": best["final_metric"],
        "best_config": best_config.to_dict(), "confirmation": confirmation.summary(),
        "final_epochs_scale": args.final_epochs_scale, "final_mixup": args.final_mixup,
        "final_inputs": list(args.final_inputs),
        "ensemble": [{"trial_id": m["trial"]["trial_id"], "normalize": m["config"].normalize,
                      "val_metric": m["trial"]["final_metric"],
                      "epochs": m["config"].epochs, "seed": m["config"].seed, "attempts": m["attempts"],
                      "test_accuracy": m["result"]["metrics"]["accuracy"],
                      "test_macro_f1": m["result"]["metrics"]["macro_f1"]}
                     for m in kept],
        "ensemble_dropped": dropped,
        "search_wall_clock_s": round(search_seconds, 1),
        "timings": {k: round(v, 2) for k, v in timings.items()},
        "test": test, "seed_recipe_test": seed_test,
        "trials": trials,
        "exported": {"dir": BEST_DIR, "keras": f"{BEST_DIR}/model.keras", "saved_model": f"{BEST_DIR}/saved_model",
                     "tflite": f"{BEST_DIR}/model.tflite", "model_card": f"{BEST_DIR}/model_card.json"},
    }
    write_report(run_dir, report, kept[0]["result"]["history"], args.metric)
    return report


def _print_summary(report: dict, run_dir: Path) -> None:
    print(f"\nFER Tune: {report['trials_completed']} trials completed, {report['trials_failed']} failed, "
          f"search {report['search_wall_clock_s']:.0f} s, split {report['split']}")
    print(f"  final model   test accuracy {report['test_accuracy']:.1%} "
          f"(95% CI {report['test_accuracy_ci95'][0]:.1%}-{report['test_accuracy_ci95'][1]:.1%}), "
          f"macro-F1 {report['test_macro_f1']:.3f} (ensemble of {len(report['ensemble'])} networks of the best "
          f"configs on {' and '.join(report['final_inputs'])} faces, "
          f"mirror test-time augmentation)")
    print(f"  seed recipe   test accuracy {report['seed_recipe_test_accuracy']:.1%}, "
          f"macro-F1 {report['seed_recipe_test_macro_f1']:.3f} (the notebook reported "
          f"{report['seed_baseline_accuracy']:.0%})")
    print(f"  majority class {report['majority_accuracy']:.1%}")
    print(f"  report: {run_dir / 'report.md'}\n  model:  {run_dir / BEST_DIR}\n"
          f"  tensorboard --logdir {run_dir / TENSORBOARD_DIR}")


def _trial_dirname(trial) -> str:
    return f"trial_{trial.trial_id}"


def _progress_table(metric: str):
    from ray.tune import CLIReporter

    return CLIReporter(metric_columns={"training_iteration": "epochs", "val_accuracy": "val acc",
                                       "val_macro_f1": "val F1", "time_total_s": "s"},
                       parameter_columns={"conv_blocks": "blocks", "base_filters": "filters",
                                          "batch_norm": "bn", "learning_rate": "lr", "batch_size": "batch",
                                          "schedule": "schedule"},
                       metric=metric, mode="max", max_report_frequency=30, sort_by_metric=True)


def _read_state(run_dir: Path) -> dict:
    return json.loads((run_dir / RUN_FILE).read_text())


def _write_state(run_dir: Path, state: dict) -> None:
    from search.report import write_atomic

    write_atomic(run_dir / RUN_FILE, json.dumps(state, indent=2))


def _check_address(address: str) -> None:
    """Fail fast, with one line, when nothing answers at a cluster address."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    if address == "auto" or not port.isdigit():
        return  # let Ray resolve it (and say what is wrong)
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=10):
            pass
    except (OSError, ValueError):
        raise FerInputError(f"--address {address}: no Ray cluster answers there "
                            "(expected HOST:PORT of a running 'ray start --head')") from None


def _start_ray(address: Optional[str]) -> None:
    import ray

    env = {"TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore",
           # a trial that ASHA stops finishes its current epoch before its worker takes the next
           # trial; Tune's default 2 s wait fails the reuse, and with it the next trial
           "TUNE_FUNCTION_THREAD_TIMEOUT_S": str(TRIAL_STOP_WAIT_S)}
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", EXPERIMENT_SAVE_PERIOD_S)
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    # a trial's checkpoint (num_to_keep=1) forces a state snapshot: intended, not a warning
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")  # CSV/JSON are added by hand, TBX not at all
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the classic one-row-per-trial table
    ray.init(address=address or "local", include_dashboard=False, logging_level=logging.WARNING,
             runtime_env={"env_vars": env}, ignore_reinit_error=True)


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="search.run"))
