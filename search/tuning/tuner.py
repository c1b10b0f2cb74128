"""The search itself: Ray started, Optuna's sampler and the scheduler wired into one Tune run.

Every trial is :func:`search.tuning.trainable.train_trial`, a ``fer_core`` training reporting
each epoch. The sampler is a random start then multivariate TPE (:mod:`search.tuning.sampler`),
the seed's recipe and ``--points`` first; the scheduler stops trials at rungs unless they are
among the best of the recent trials there (:mod:`search.tuning.scheduler`); the run's
:class:`search.budget.Budget` ends the search at its deadline. Tune saves its state every few
seconds into the run folder, so an interrupted search resumes without rerunning finished
trials. The defaults are in :mod:`search.settings`.
"""

from __future__ import annotations

import logging
import warnings
from functools import partial
from pathlib import Path
from typing import Optional, Sequence

import optuna
import ray
from optuna.exceptions import ExperimentalWarning
from optuna.samplers import TPESampler
from ray import tune
from ray.tune import CLIReporter
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler

from fer_core.evaluate import constant_scores
from fer_core.splits import Splits
from fer_core.transfer import Pretrained
from search.budget import Budget
from search.rundir import TENSORBOARD_DIR, TUNE_DIR
from search.settings import (ASHA_GRACE_SHARE, ASHA_KEEP, ASHA_REDUCTION_FACTOR, ASHA_WINDOW, Resources,
                             SearchSettings)
from search.tuning.prior import prior_points
from search.tuning.progress import SearchProgress
from search.tuning.sampler import StartupSampler
from search.tuning.scheduler import RecentASHAScheduler
from search.tuning.searcher import BudgetedOptunaSearch
from search.tuning.space import define_space, seed_point
from search.tuning.stopper import DeadlineStopper
from search.tuning.tensorboard import TensorBoardCallback, write_hparams_config
from search.tuning.trainable import SearchData, train_trial

log = logging.getLogger("search.tuning.tuner")

TRIAL_RETRIES = 2  # a trial whose node or worker dies is retried from its last checkpoint
PROGRESS_PERIOD_S = 30  # the progress table is printed at most this often


def trial_dirname(trial) -> str:
    """A trial's folder in ``tune/``: its id alone (Tune's default name holds the whole config)."""
    return f"trial_{trial.trial_id}"


def build_searcher(settings: SearchSettings, budget: Optional[Budget] = None, faces: int = 0):
    """Optuna TPE over :func:`search.tuning.space.define_space` after a random start
    (``sampler="tpe"``: Optuna's own), the seed's recipe, the built-in prior's configs (:mod:`search.tuning.prior`) and the points
    enqueued first; no new
    trial after the ``budget``'s search deadline, whose random start also ends by its clock.
    With a cost weight, TPE is told scores (on ``faces`` validation faces) less their cost
    (:mod:`search.tuning.searcher`)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # Tune's table shows the trials; Optuna's lines repeat it
    if settings.sampler == "tpe":
        sampler = TPESampler(seed=settings.seed)
    else:
        with warnings.catch_warnings():  # multivariate and group are experimental in name only; nothing to act on
            warnings.simplefilter("ignore", ExperimentalWarning)
            sampler = StartupSampler(n_startup=settings.startup_trials, seed=settings.seed, budget=budget,
                                     multivariate=True, group=True)
    return BudgetedOptunaSearch(space=partial(define_space, max_epochs=settings.max_t,
                                              architecture=settings.architecture,
                                              round_images=settings.round_images or 0, large=settings.large),
                                metric=settings.metric, mode="max",
                                points_to_evaluate=[seed_point(settings.architecture, settings.max_t, settings.large),
                                                    *prior_points(settings), *settings.points],
                                sampler=sampler, budget=budget, cost_weight=settings.cost_weight, faces=faces)


def build_scheduler(settings: SearchSettings, floor: Optional[float] = None):
    """ASHA's rungs (3 and 9 of 16 epochs), each judging a trial against the recent trials there;
    in rounds on a large data set, the first rung after one round (:meth:`SearchSettings.sized_for`).
    A trial below ``floor`` (the metric of answering the most common class) stops at any rung.

    ``scheduler="hyperband"``: Ray's asynchronous Hyperband with the brackets Optuna's
    ``HyperbandPruner`` has in ``experiments.compare_tuners`` (rungs at 1, 3, 9, ...
    epochs, reduction factor 3), for measuring one against the other.
    ``scheduler="none"``: Tune's first-in-first-out; every trial runs all its epochs."""
    if settings.scheduler == "none":
        return FIFOScheduler()
    if settings.scheduler == "hyperband":
        brackets = 1
        while ASHA_REDUCTION_FACTOR ** brackets < settings.max_t:  # bracket s first judges at rf^s epochs
            brackets += 1
        return AsyncHyperBandScheduler(metric=settings.metric, mode="max", max_t=settings.max_t,
                                       grace_period=1, reduction_factor=ASHA_REDUCTION_FACTOR, brackets=brackets)
    grace = 1 if settings.round_images else max(1, round(settings.max_epochs * ASHA_GRACE_SHARE))
    return RecentASHAScheduler(metric=settings.metric, mode="max", max_t=settings.max_t, grace_period=grace,
                               reduction_factor=ASHA_REDUCTION_FACTOR, window=ASHA_WINDOW, keep=ASHA_KEEP,
                               floor=floor)


def run_search(settings: SearchSettings, run_dir: Path, splits: Splits, budget: Budget, resume: bool = False):
    """Run (or resume) the Tune search in ``run_dir/tune`` within the ``budget``'s search deadline
    (:meth:`search.budget.Budget.start_search` set it); return Tune's ExperimentAnalysis."""
    trainable = trial_trainable(splits, settings.resources, settings.init)
    tune_path = run_dir / TUNE_DIR
    if resume and tune.Tuner.can_restore(str(tune_path)):
        log.info("resuming %s: finished trials are kept", tune_path)
        tuner = tune.Tuner.restore(str(tune_path), trainable, resume_unfinished=True, resume_errored=False)
    else:
        fine_tuning = ["frozen_share"] if settings.init else []  # asked only when a block is held still
        names = [*seed_point(settings.architecture, settings.max_t, settings.large), *fine_tuning]
        write_hparams_config(run_dir / TENSORBOARD_DIR, names + ["epochs"] * ("epochs" not in names))
        tuner = make_tuner(trainable, run_dir, settings.trials, build_searcher(settings, budget, len(splits.val)),
                           build_scheduler(settings, floor=_constant_score(splits, settings.metric)),
                           callbacks=[TensorBoardCallback(run_dir / TENSORBOARD_DIR), CSVLoggerCallback(),
                                      JsonLoggerCallback(),
                                      SearchProgress(budget, settings.trials, settings.metric, settings.slots)],
                           stop=DeadlineStopper(budget), progress_reporter=_progress_table(settings.metric))
    tune_log = logging.getLogger("ray.tune.tune")
    tune_log.addFilter(_drop_ray_resume_hint)  # FER Tune prints its own resume command
    try:
        tuner.fit()
    finally:
        tune_log.removeFilter(_drop_ray_resume_hint)
    # a trial interrupted before its first epoch has no results yet: the report says so, not Ray
    analysis_log = logging.getLogger("ray.tune.analysis.experiment_analysis")
    level = analysis_log.level
    analysis_log.setLevel(logging.ERROR)
    try:
        return tune.ExperimentAnalysis(str(tune_path))
    finally:
        analysis_log.setLevel(level)


def trial_trainable(splits: Splits, resources: Resources, init: Optional[Pretrained] = None):
    """:func:`search.tuning.trainable.train_trial` with the data in Ray's object store once and one
    trial's ``resources`` (TensorFlow's threads pinned to its CPUs)."""
    return tune.with_resources(
        tune.with_parameters(train_trial, data=SearchData(splits.train, splits.val, init), threads=resources.threads),
        {"cpu": resources.cpus, "gpu": resources.gpus})


def make_tuner(trainable, run_dir: Path, trials: int, searcher, scheduler=None, callbacks: Sequence = (),
               stop=None, progress_reporter=None, verbose: int = 1) -> tune.Tuner:
    """A Tune run of ``trials`` trials in ``run_dir/tune``: each trial's folder named by its id, a
    worker reused from one trial to the next, a failed trial retried from its checkpoint."""
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            num_samples=trials, trial_dirname_creator=trial_dirname,
            reuse_actors=True,  # a worker keeps TensorFlow loaded from one trial to the next
            search_alg=searcher, scheduler=scheduler),
        run_config=tune.RunConfig(
            name=TUNE_DIR, storage_path=str(run_dir), callbacks=list(callbacks), stop=stop,
            failure_config=tune.FailureConfig(max_failures=TRIAL_RETRIES),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            progress_reporter=progress_reporter, verbose=verbose))


def _drop_ray_resume_hint(record: logging.LogRecord) -> bool:
    return "Resume experiment with" not in record.getMessage()


def _constant_score(splits: Splits, metric: str) -> float:
    """``metric`` on validation of always answering the training faces' most common class."""
    scores = constant_scores(splits.train.labels, splits.val.labels, splits.train.n_classes)
    return scores[metric.removeprefix("val_")]


def _progress_table(metric: str):
    return CLIReporter(metric_columns={"training_iteration": "epochs", "val_accuracy": "val acc",
                                       "val_macro_f1": "val F1", "time_total_s": "s"},
                       parameter_columns={"conv_blocks": "blocks", "base_filters": "filters",
                                          "batch_norm": "bn", "learning_rate": "lr", "batch_size": "batch",
                                          "schedule": "schedule"},
                       metric=metric, mode="max", max_report_frequency=PROGRESS_PERIOD_S, sort_by_metric=True)
