"""The search itself: Ray started, Optuna's sampler and the scheduler wired into one Tune run.

Every trial is :func:`search.trainable.train_trial`, a ``fer_core`` training reporting each
epoch. The sampler is a random start then multivariate TPE (:mod:`search.sampler`), the
seed's recipe and ``--points`` first; the scheduler stops trials at rungs unless they are
among the best of the recent trials there (:mod:`search.scheduler`). Tune saves its state
every few seconds into the run folder, so an interrupted search resumes without rerunning
finished trials. Evidence for each default: ``experiments/README.md``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Optional

from fer_core.errors import FerInputError
from fer_core.splits import Splits
from fer_core.transfer import Pretrained
from search.rundir import TENSORBOARD_DIR, TUNE_DIR
from search.tasks import Resources

log = logging.getLogger("search.tuner")

METRICS = ("val_accuracy", "val_macro_f1")
SAMPLERS = ("startup", "tpe")  # the first is the default
SCHEDULERS = ("asha", "hyperband", "none")  # the first is the default
DEFAULT_MAX_EPOCHS = 16  # same test accuracy as the seed's 20 in 83% of the time ("The 50-trial search")
STARTUP_SHARE = 0.4  # random start: two fifths of the trials, or of a budget's time ("The 50-trial search")
STARTUP_CAP = 20  # ... at most this many trials
ASHA_REDUCTION_FACTOR = 3
ASHA_GRACE_SHARE = 0.2  # first rung at a fifth of the epoch budget (3 of 16), the next at 3x that
ASHA_WINDOW = 9  # a trial at a rung is judged against the last 9 trials that reached it ...
ASHA_KEEP = 0.25  # ... and goes on if among their best quarter (search/scheduler.py)
TRIAL_RETRIES = 2  # a trial whose node or worker dies is retried from its last checkpoint
TRIAL_STOP_WAIT_S = 600  # longest epoch a stopped trial may finish before its worker is reused
EXPERIMENT_SAVE_PERIOD_S = "2"  # how often Tune saves its state: a killed driver loses at most this much
PROGRESS_PERIOD_S = 30  # the progress table is printed at most this often


@dataclass(frozen=True)
class SearchSettings:
    """What defines a search: its size, its metric, its sampler and scheduler, its seed, and the
    pretrained network it fine-tunes (``init``; the space is then the fine-tuning space)."""

    trials: int = 50
    max_epochs: int = DEFAULT_MAX_EPOCHS
    metric: str = METRICS[0]
    seed: int = 0
    sampler: str = SAMPLERS[0]
    scheduler: str = SCHEDULERS[0]
    points: tuple[dict[str, Any], ...] = ()  # configs tried first, after the seed's recipe
    resources: Resources = Resources()
    init: Optional[Pretrained] = None
    round_images: Optional[int] = None  # a trial's epoch is a round of this many faces; None: by data size (sized_for)
    max_rounds: int = 0  # ... and its budget is this many rounds: max_epochs passes over the training faces
    large: bool = False  # the large data set's space (search.space.LARGE_DATA)
    cost_weight: float = 0.0  # ties within this many standard errors go to the faster config (search.cost)

    @property
    def max_t(self) -> int:
        """A trial's budget in the epochs it reports: ``max_epochs``, or ``max_rounds`` on a large data set."""
        return self.max_rounds or self.max_epochs

    def sized_for(self, n_train: int) -> "SearchSettings":
        """These settings for ``n_train`` training faces: on a large data set a trial reports, and the
        scheduler judges it, every :func:`search.space.round_images` faces, so that its first rung
        comes in seconds rather than after whole passes (``experiments/README.md``, "Rounds")."""
        from search.space import is_large, round_images

        images = round_images(n_train) if self.round_images is None else self.round_images
        return dataclasses.replace(self, round_images=images, large=is_large(n_train),
                                   max_rounds=math.ceil(self.max_epochs * n_train / images) if images else 0)

    @property
    def architecture(self) -> Optional[dict[str, Any]]:
        """The pretrained network's architecture, which the fine-tuning space keeps; None from scratch."""
        return self.init.architecture() if self.init else None


def trial_dirname(trial) -> str:
    """A trial's folder in ``tune/``: its id alone (Tune's default name holds the whole config)."""
    return f"trial_{trial.trial_id}"


def startup_trials(trials: int) -> int:
    """Random trials before TPE models the results: two fifths of the search, at most 20.

    Random trials are cheap (the poor ones stop at the first rung) and the only
    protection against a start that misleads TPE. Under a time budget the random start
    also ends at two fifths of the search's time (:mod:`search.sampler`)."""
    return max(1, min(STARTUP_CAP, trials * 2 // 5))  # STARTUP_SHARE, in whole trials


def build_searcher(settings: SearchSettings, budget_s: Optional[float], deadline_file: Optional[Path] = None,
                   faces: int = 0):
    """Optuna TPE over :func:`search.space.define_space` after a random start
    (``sampler="tpe"``: Optuna's own), the seed's recipe and the points enqueued first;
    no new trial after the deadline in ``deadline_file`` (:mod:`search.deadline`). ``budget_s``,
    the search's seconds, also ends the random start at two fifths of them. With a cost
    weight, TPE is told scores (on ``faces`` validation faces) less their cost (:mod:`search.searcher`)."""
    import optuna
    from optuna.exceptions import ExperimentalWarning
    from optuna.samplers import TPESampler

    from search.sampler import StartupSampler
    from search.searcher import BudgetedOptunaSearch
    from search.space import define_space, seed_point

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # Tune's table shows the trials; Optuna's lines repeat it
    now = time.time()
    if settings.sampler == "tpe":
        sampler = TPESampler(seed=settings.seed)
    else:
        with warnings.catch_warnings():  # multivariate and group are experimental in name only; nothing to act on
            warnings.simplefilter("ignore", ExperimentalWarning)
            sampler = StartupSampler(n_startup=startup_trials(settings.trials), seed=settings.seed,
                                     multivariate=True, group=True,
                                     random_until=now + budget_s * STARTUP_SHARE if budget_s else None,
                                     clock_file=deadline_file)
    return BudgetedOptunaSearch(space=partial(define_space, max_epochs=settings.max_t,
                                              architecture=settings.architecture,
                                              round_images=settings.round_images or 0, large=settings.large),
                                metric=settings.metric, mode="max",
                                points_to_evaluate=[seed_point(settings.architecture, settings.max_t, settings.large),
                                                    *settings.points],
                                sampler=sampler, deadline_file=deadline_file, cost_weight=settings.cost_weight,
                                faces=faces)


def random_start_left(search_s: float, share_s: Optional[float] = None) -> float:
    """Seconds of the random start left when ``search_s`` of the search's ``share_s`` are left
    (default: all of it): the start is the share's first :data:`STARTUP_SHARE`."""
    share_s = search_s if share_s is None else share_s
    return max(0.0, search_s - (1 - STARTUP_SHARE) * share_s)


def build_scheduler(settings: SearchSettings, floor: Optional[float] = None):
    """ASHA's rungs (3 and 9 of 16 epochs), each judging a trial against the recent trials there;
    in rounds on a large data set, the first rung after one round (:meth:`SearchSettings.sized_for`).
    A trial below ``floor`` (the metric of answering the most common class) stops at any rung.

    ``scheduler="hyperband"``: Ray's asynchronous Hyperband with the brackets Optuna's
    ``HyperbandPruner`` has in ``experiments.compare_tuners`` (rungs at 1, 3, 9, ...
    epochs, reduction factor 3), for measuring one against the other.
    ``scheduler="none"``: Tune's first-in-first-out; every trial runs all its epochs."""
    from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler

    from search.scheduler import RecentASHAScheduler

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


def run_search(settings: SearchSettings, run_dir: Path, splits: Splits, budget_s: Optional[float],
               resume: bool = False):
    """Run (or resume) the Tune search in ``run_dir/tune``; return Tune's ExperimentAnalysis."""
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    from search.deadline import DEADLINE_FILE, DeadlineStopper
    from search.progress import SearchProgress
    from search.space import seed_point
    from search.tensorboard import TensorBoardCallback, write_hparams_config
    from search.trainable import SearchData, train_trial

    resources = settings.resources
    trainable = tune.with_resources(
        tune.with_parameters(train_trial, data=SearchData(splits.train, splits.val, settings.init),
                             threads=resources.threads),
        {"cpu": resources.cpus, "gpu": resources.gpus})
    tune_path = run_dir / TUNE_DIR
    if resume and tune.Tuner.can_restore(str(tune_path)):
        log.info("resuming %s: finished trials are kept", tune_path)
        tuner = tune.Tuner.restore(str(tune_path), trainable, resume_unfinished=True, resume_errored=False)
    else:
        fine_tuning = ["frozen_share"] if settings.init else []  # asked only when a block is held still
        names = [*seed_point(settings.architecture, settings.max_t, settings.large), *fine_tuning]
        write_hparams_config(run_dir / TENSORBOARD_DIR, names + ["epochs"] * ("epochs" not in names))
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                num_samples=settings.trials, trial_dirname_creator=trial_dirname,
                reuse_actors=True,  # a worker keeps TensorFlow loaded from one trial to the next
                search_alg=build_searcher(settings, budget_s, run_dir / DEADLINE_FILE, len(splits.val)),
                scheduler=build_scheduler(settings, floor=_constant_score(splits, settings.metric))),
            run_config=tune.RunConfig(
                name=TUNE_DIR, storage_path=str(run_dir),
                callbacks=[TensorBoardCallback(run_dir / TENSORBOARD_DIR), CSVLoggerCallback(), JsonLoggerCallback(),
                           SearchProgress(run_dir, settings.trials, settings.metric, cluster_slots(resources))],
                stop=DeadlineStopper(run_dir / DEADLINE_FILE),
                failure_config=tune.FailureConfig(max_failures=TRIAL_RETRIES),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                progress_reporter=_progress_table(settings.metric), verbose=1))
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


def cluster_slots(resources: Resources) -> int:
    """Trials at once on this cluster: its CPUs over a trial's."""
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1) // resources.cpus))


def _drop_ray_resume_hint(record: logging.LogRecord) -> bool:
    return "Resume experiment with" not in record.getMessage()


def _constant_score(splits: Splits, metric: str) -> float:
    """``metric`` on validation of always answering the training faces' most common class."""
    from fer_core.evaluate import constant_scores

    scores = constant_scores(splits.train.labels, splits.val.labels, splits.train.n_classes)
    return scores[metric.removeprefix("val_")]


def _progress_table(metric: str):
    from ray.tune import CLIReporter

    return CLIReporter(metric_columns={"training_iteration": "epochs", "val_accuracy": "val acc",
                                       "val_macro_f1": "val F1", "time_total_s": "s"},
                       parameter_columns={"conv_blocks": "blocks", "base_filters": "filters",
                                          "batch_norm": "bn", "learning_rate": "lr", "batch_size": "batch",
                                          "schedule": "schedule"},
                       metric=metric, mode="max", max_report_frequency=PROGRESS_PERIOD_S, sort_by_metric=True)


def check_address(address: str) -> None:
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


def start_ray(address: Optional[str]) -> None:
    """Join the cluster at ``address``, or start a local one, with the settings every worker needs."""
    env = {"TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore",
           # a trial that ASHA stops finishes its current epoch before its worker takes the next
           # trial; Tune's default 2 s wait fails the reuse, and with it the next trial
           "TUNE_FUNCTION_THREAD_TIMEOUT_S": str(TRIAL_STOP_WAIT_S)}
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", EXPERIMENT_SAVE_PERIOD_S)
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # CSV/JSON are added by hand, TBX not at all
    # a trial's checkpoint (num_to_keep=1) forces a state snapshot: intended, not a warning
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the classic one-row-per-trial table
    if not address and "ray" not in sys.modules:
        # a local cluster keeps Ray's default, token authentication; saying so outright skips Ray's
        # notice of it. Ray reads the mode once, when it is imported: in a process that imported it
        # already (a harness starting Ray again), Ray's own default applies.
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    import ray

    ray.init(address=address or "local", include_dashboard=False, logging_level=logging.WARNING,
             runtime_env={"env_vars": env}, ignore_reinit_error=True)
