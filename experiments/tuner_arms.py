"""The four arms of ``experiments.compare_tuners``: one function per tool, each given the same
splits, search space, epoch budget and wall-clock budget (:class:`Context`), each returning its
finished trials and its winner (:class:`ArmResult`).

- ``fertune``: FER Tune itself, through the stages ``python -m search.run`` runs (``search.pipeline``): Optuna TPE with
  the seed's recipe first, after a random start that the budget's clock can end
  (``search/sampler.py``), ASHA, on Ray; one CPU and one TensorFlow thread per trial, as
  many trials at once as there are CPUs; then, inside the same budget (the search has
  ``SEARCH_SHARE / (SEARCH_SHARE + CONFIRM_SHARE)`` of it, 71%, as ``search.budget`` shares a
  run's between those two stages), the cross-validated confirmation of its best configs
  (``search/final/confirm.py``), whose best is its winner; on a large data set, which it does not
  confirm, the search has the whole budget. Its "best val acc" is that winner's
  validation accuracy, which need not be the highest of its trials. ``--fertune-args``
  gives it more ``search.run`` options (checked by ``search.run`` before anything runs);
  compare.json keeps them and ``--merge`` refuses two FER Tunes run with different ones.
- ``kerastuner``: KerasTuner's Hyperband (``max_epochs`` = ``--max-epochs``, factor 3,
  brackets repeated until the budget), in this process with TensorFlow on every core. The
  space goes through a shim that turns Optuna's ``suggest_*`` into ``hp.Int``/``hp.Float``/
  ``hp.Choice``; training is the project's (``fer_core.train.fit``); a trial that Hyperband
  promotes continues from its predecessor's saved model and optimizer state.
- ``optuna``: Optuna alone, no Ray: TPE, Hyperband pruning on each epoch's validation
  accuracy, ``study.optimize(timeout=budget)``, one trial at a time on every core.
- ``ray_random``: Ray Tune with random sampling of the same space and no early stopping
  (FIFO), FER Tune's trainable and resources.

With ``stop_at_budget`` (``compare_tuners --stop-at-budget``) every trial still running when
the budget ends stops at the end of its epoch, as FER Tune's do under ``--time-budget``: a
budget-stopped trial is scored by its last epoch in the Ray arms and KerasTuner (as their
schedulers' stopped trials are) and counts as pruned for Optuna alone, whose own winner is
a completed trial. Without it, trials already running finish (FER Tune's still stop).

A winner retrains for ``max_epochs`` passes over train + validation in every arm: FER Tune's
trials on a large data set count their epochs in rounds (``search/tuning/space.py``), and its
winner's config is turned back to passes (:func:`train_config`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from fer_core import ConfigError, Splits, fit
from search import (CONFIRM_SHARE, SEARCH_SHARE, TUNE_DIR, Budget, BudgetedOptunaSearch, DeadlineStopper, Resources,
                    TrialRecord, build_parser, check_args, confirm_trials, define_space, final_members, is_large,
                    make_tuner, pick_best, run_settings, search_trials, start_ray, to_config, trial_record,
                    trial_trainable)

METRIC = "val_accuracy"
THREADS = 2  # TensorFlow threads of the in-process arms and of every retrain: all the cores
TRIAL_CAP = "1000"  # the Ray arms' trial count: the budget, not this, ends them
HYPERBAND_FACTOR = 3
SCORED = ("completed", "stopped_early")
KT_MODEL = "model.keras"  # a KerasTuner trial's model and optimizer state, for the trial that continues it
KT_HISTORY = "history.json"


@dataclass(frozen=True)
class Context:
    """What every arm shares: the splits, the epoch budget, the wall-clock budget."""

    data: str
    split: str
    splits: Splits
    max_epochs: int
    budget_text: str
    budget_s: float
    retrains: int
    fertune_args: tuple[str, ...] = ()
    final_models: bool = False
    stop_at_budget: bool = False

    def past_budget(self, started: float) -> bool:
        """Whether an arm that started at ``started`` (a ``time.time()``) must stop its running trials."""
        return self.stop_at_budget and time.time() - started >= self.budget_s

    def fertune_settings(self, seed: int) -> Any:
        """``search.run``'s settings (:class:`search.settings.RunSettings`) for FER Tune's arm at ``seed``:
        the harness's flags and ``--fertune-args``, sized for the training faces as ``search.run`` sizes them."""
        args = build_parser().parse_args(["--trials", TRIAL_CAP, "--time-budget", self.budget_text,
                                          "--max-epochs", str(self.max_epochs), "--seed", str(seed),
                                          "--data", self.data, "--split", self.split, *self.fertune_args])
        check_args(args)
        return run_settings(args).sized_for(len(self.splits.train))

    @property
    def large(self) -> bool:
        """Whether every arm searches the large data set's space (``search.tuning.space.is_large``), as FER Tune does."""
        return is_large(len(self.splits.train))


@dataclass(frozen=True)
class TrialResult:
    """One finished trial: when (seconds since the arm started), how far and how good.

    ``status`` is ``completed`` (ran ``max_epochs``), ``stopped_early`` (pruned, stopped by
    a scheduler, or a Hyperband round below ``max_epochs``) or ``failed``. ``continues``
    names the KerasTuner trial whose model this one trained further.
    """

    trial_id: str
    finished_s: Optional[float]
    val_accuracy: Optional[float]
    epochs: int
    status: str
    config: Optional[dict[str, Any]]
    continues: Optional[str] = None
    error: Optional[str] = None

    @property
    def scored(self) -> bool:
        return self.status in SCORED and finite(self.val_accuracy) and self.finished_s is not None


@dataclass
class ArmResult:
    """One tool's search at one seed: its trials, its winner, its wall-clock."""

    tool: str
    seed: int
    wall_clock_s: float
    trials: list[TrialResult]
    winner_id: Optional[str]
    winner_val_accuracy: Optional[float]
    winner_config: Optional[dict[str, Any]]
    notes: dict[str, Any] = field(default_factory=dict)
    # FER Tune's final members (search.run's trial dicts, best first) and its run settings,
    # for --final-models; the other tools' members are their best by validation
    members: Optional[list[TrialRecord]] = None
    settings: Optional[Any] = None  # search.settings.RunSettings


def arm_fertune(ctx: Context, seed: int, arm_dir: Path) -> ArmResult:
    """FER Tune through ``search.run``'s own stages: its flags, Ray start, search and confirmation."""
    import ray

    settings = ctx.fertune_settings(seed)  # --fertune-args were checked by compare_tuners before any arm ran
    arm_dir.mkdir(parents=True)
    settings = settings.on_cluster(start_ray(None, settings.search.resources))
    try:
        started = time.time()
        confirming = settings.confirm.count(len(ctx.splits.train))  # none on a large data set: all to the search
        search_s = ctx.budget_s * SEARCH_SHARE / (SEARCH_SHARE + CONFIRM_SHARE) if confirming else ctx.budget_s
        records = search_trials(settings, arm_dir, ctx.splits, Budget.search_only(arm_dir, search_s))
        # its confirmation by cross-validation is part of its search: inside the same budget
        confirmation = confirm_trials(settings, arm_dir, ctx.splits, records, started + ctx.budget_s)
        wall = time.time() - started
        trials = _tune_trials(arm_dir)
        arm = _ray_arm("fertune", seed, wall, records, trials, started, ctx.max_epochs,
                       best=confirmation.ranked[0] if confirmation.ranked else None)
        arm.notes["confirmation"] = confirmation.to_json()
        arm.notes["slots"] = settings.search.slots  # trials at once on its cluster
        arm.members = final_members(settings, ctx.splits, records, confirmation)
        arm.settings = settings
        return arm
    finally:
        ray.shutdown()


def _tune_trials(arm_dir: Path) -> list:
    """Tune's own trial objects of the search in ``arm_dir`` (for their result times)."""
    from ray import tune

    return tune.ExperimentAnalysis(str(arm_dir / TUNE_DIR)).trials


def arm_ray_random(ctx: Context, seed: int, arm_dir: Path) -> ArmResult:
    """Ray Tune, random sampling, FIFO: FER Tune's trainable and resources, no ASHA, no TPE."""
    import optuna
    import ray
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback

    start_ray(None)
    try:
        started = time.time()
        arm_dir.mkdir(parents=True, exist_ok=True)
        budget = Budget.search_only(arm_dir, ctx.budget_s)
        budget.start_search()
        searcher = BudgetedOptunaSearch(space=functools.partial(define_space, max_epochs=ctx.max_epochs,
                                                                large=ctx.large),
                                        sampler=optuna.samplers.RandomSampler(seed=seed), metric=METRIC,
                                        mode="max", budget=budget)
        tuner = make_tuner(trial_trainable(ctx.splits, Resources()), arm_dir, int(TRIAL_CAP), searcher,
                           callbacks=[JsonLoggerCallback()],  # result.json, read by trial_record
                           stop=DeadlineStopper(budget) if ctx.stop_at_budget else None, verbose=0)
        tuner.fit()
        wall = time.time() - started
        analysis = tune.ExperimentAnalysis(str(arm_dir / TUNE_DIR))
        records = [trial_record(t, METRIC, ctx.max_epochs) for t in analysis.trials]
        return _ray_arm("ray_random", seed, wall, records, analysis.trials, started, ctx.max_epochs)
    finally:
        ray.shutdown()


def _ray_arm(tool: str, seed: int, wall: float, records: list[TrialRecord], trials: list, started: float,
             max_epochs: int, best: Optional[TrialRecord] = None) -> ArmResult:
    """A Ray arm's trials, finish times (when Tune got each trial's last result) and winner.

    The winner is ``best`` when given (FER Tune's, after its confirmation), else the trial
    with the best validation accuracy."""
    results = []
    by_id = {trial.trial_id: trial for trial in trials}
    for record in records:
        trial = by_id[record.trial_id]
        finished = trial.run_metadata.last_result_time
        results.append(TrialResult(
            trial_id=record.trial_id, finished_s=finished - started if math.isfinite(finished) else None,
            val_accuracy=record.final_metric, epochs=record.epochs, status=record.status,
            config=train_config(record.config, max_epochs), error=record.error))
    best = best or pick_best(records)
    return ArmResult(tool, seed, wall, results, best and best.trial_id, best and best.final_metric,
                     best and train_config(best.config, max_epochs))


def arm_optuna(ctx: Context, seed: int, arm_dir: Path) -> ArmResult:
    """Optuna alone: TPE, Hyperband pruning per epoch, ``timeout`` = the budget, one trial at a time."""
    import optuna


    optuna.logging.set_verbosity(optuna.logging.WARNING)
    results: list[TrialResult] = []
    started = time.time()
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=hyperband_pruner(ctx.max_epochs))

    def objective(trial: optuna.Trial) -> float:
        # samples first: trial.params fills as it runs
        constants = define_space(trial, ctx.max_epochs, large=ctx.large)
        config = to_config({**trial.params, **constants})
        trial.set_user_attr("config", config.to_dict())
        pruned = []

        def report(epoch) -> bool:
            trial.report(epoch.val_accuracy, epoch.epoch)
            if trial.should_prune():
                pruned.append(f"pruned at epoch {epoch.epoch}")
            elif ctx.past_budget(started):
                pruned.append(f"stopped at epoch {epoch.epoch} by the budget")
            return bool(pruned)

        try:
            _, history = fit(config, ctx.splits.train, ctx.splits.val, on_epoch=report, threads=THREADS)
        except Exception as exc:  # Optuna records the failure (catch=...); keep its reason too
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:500])
            raise
        if pruned:
            raise optuna.TrialPruned(pruned[0])
        return history[-1][METRIC]

    def record(_study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        results.append(_optuna_result(trial, time.time() - started, ctx.max_epochs))

    study.optimize(objective, timeout=ctx.budget_s, n_jobs=1, catch=(Exception,), callbacks=[record])
    wall = time.time() - started
    winner = _optuna_winner(study)
    return ArmResult("optuna", seed, wall, results, winner and str(winner.number),
                     winner and _optuna_value(winner), winner and _with_epochs(winner.user_attrs["config"],
                                                                              ctx.max_epochs))


def hyperband_pruner(max_epochs: int):
    """Optuna alone's pruner: Hyperband judging each epoch from the first (``search.run
    --scheduler hyperband`` gives Ray's Hyperband the same brackets)."""
    import optuna

    return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max_epochs, reduction_factor=HYPERBAND_FACTOR)


def _optuna_result(trial, finished_s: float, max_epochs: int) -> TrialResult:
    import optuna

    status = {optuna.trial.TrialState.COMPLETE: "completed", optuna.trial.TrialState.PRUNED: "stopped_early"}
    epochs = max(trial.intermediate_values, default=0)
    state = status.get(trial.state, "failed")
    if state == "completed" and epochs < max_epochs:
        state = "stopped_early"
    return TrialResult(trial_id=str(trial.number), finished_s=finished_s, val_accuracy=_optuna_value(trial),
                       epochs=epochs, status=state, config=trial.user_attrs.get("config"),
                       error=trial.user_attrs.get("error", "unknown error") if state == "failed" else None)


def _optuna_value(trial) -> Optional[float]:
    """A trial's final value; a pruned trial's last reported one."""
    if trial.value is not None:
        return float(trial.value)
    if trial.intermediate_values:
        return float(trial.intermediate_values[max(trial.intermediate_values)])
    return None


def _optuna_winner(study):
    """Optuna's own best trial (complete trials only); the best pruned one if none completed."""
    import optuna

    if any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
        return study.best_trial
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED and _optuna_value(t) is not None]
    return max(pruned, key=_optuna_value, default=None)


def arm_kerastuner(ctx: Context, seed: int, arm_dir: Path) -> ArmResult:
    """KerasTuner Hyperband with a deadline, training through ``fer_core.train.fit``."""
    import keras

    hypermodel_class, oracle_class, tuner_class = _keras_tuner_classes()
    started = time.time()
    oracle = oracle_class(objective=_kt_objective(), max_epochs=ctx.max_epochs, factor=HYPERBAND_FACTOR,
                          hyperband_iterations=None,  # brackets repeat until the deadline
                          seed=seed, max_consecutive_failed_trials=10**6,  # like the other arms: go on
                          deadline=started + ctx.budget_s)
    tuner = tuner_class(oracle=oracle, hypermodel=hypermodel_class(ctx, started), directory=str(arm_dir),
                        project_name="hyperband", overwrite=True, started=started)
    tuner.search(ctx.splits.train, ctx.splits.val, verbose=0)
    wall = time.time() - started
    keras.backend.clear_session()
    best = [t for t in tuner.oracle.get_best_trials(1) if t.status == "COMPLETED"]
    configs = [t for t in tuner.results if t.continues is None and t.status in SCORED]
    winner = best[0] if best else None
    return ArmResult("kerastuner", seed, wall, tuner.results, winner and winner.trial_id,
                     winner and float(winner.score), winner and _kt_config(winner.hyperparameters, ctx).to_dict(),
                     notes={"kerastuner_trials": len(tuner.results), "configurations": len(configs)})


def _kt_objective():
    import keras_tuner as kt

    return kt.Objective(METRIC, direction="max")


class _KerasTunerTrial:
    """Optuna's ``suggest_*`` on top of KerasTuner's ``hp``, so ``define_space`` runs verbatim.

    KerasTuner has no define-by-run conditions of its own here: it samples every
    parameter it has seen, including those a branch leaves unused (augmentation
    magnitudes with augmentation off). ``params`` keeps only what ``define_space`` asked for.
    """

    def __init__(self, hp) -> None:
        self.hp = hp
        self.params: dict[str, Any] = {}

    def suggest_int(self, name: str, low: int, high: int) -> int:
        return self._keep(name, int(self.hp.Int(name, low, high)))

    def suggest_float(self, name: str, low: float, high: float, log: bool = False) -> float:
        return self._keep(name, float(self.hp.Float(name, low, high, sampling="log" if log else "linear")))

    def suggest_categorical(self, name: str, choices: list) -> Any:
        value = self.hp.Choice(name, list(choices))  # KerasTuner stores booleans as 0/1
        return self._keep(name, next(c for c in choices if c == value))

    def _keep(self, name: str, value: Any) -> Any:
        self.params[name] = value
        return value


def _kt_config(hp, ctx: Context):
    """The TrainConfig of KerasTuner's ``hp`` (``epochs`` = the full budget: the schedules' horizon)."""

    shim = _KerasTunerTrial(hp)
    constants = define_space(shim, ctx.max_epochs, large=ctx.large)
    return to_config({**shim.params, **constants})


@functools.cache
def _keras_tuner_classes() -> tuple[type, type, type]:
    """KerasTuner's HyperModel, deadline oracle and tuner, defined once keras_tuner is imported.

    Imported late: keras_tuner imports TensorFlow, whose threads must be pinned first.
    """
    import keras_tuner as kt

    from fer_core import build_cnn, fit

    class FerHyperModel(kt.HyperModel):
        """``build``: the project's CNN for ``hp``. ``fit``: the project's training, up to the
        epoch Hyperband asks for; a promoted trial resumes its predecessor's saved model.

        ``fer_core.train.fit`` builds and compiles the same network itself (it owns the
        optimizer, loss, schedules and input pipeline), so ``model`` only serves KerasTuner's
        bookkeeping.
        """

        def __init__(self, ctx: Context, started: float) -> None:
            super().__init__(name="fer_cnn")
            self.ctx = ctx
            self.started = started
            self.epochs_run: dict[str, int] = {}  # trial folder: the epoch it reached, the budget's stop included

        def build(self, hp):
            train = self.ctx.splits.train
            return build_cnn(_kt_config(hp, self.ctx), train.images.shape[1:], train.n_classes)

        def fit(self, hp, model, train, val, *, epochs: int, initial_epoch: int, trial_dir: Path,
                past_dir: Optional[Path], callbacks=(), **_ignored) -> dict[str, float]:
            config = _kt_config(hp, self.ctx)
            resume = None
            if initial_epoch:
                resume = (past_dir / KT_MODEL, json.loads((past_dir / KT_HISTORY).read_text()))
            trained, history = fit(config, train, val, callbacks=list(callbacks), threads=THREADS, resume=resume,
                                   on_epoch=lambda report: report.epoch >= epochs or self.ctx.past_budget(self.started))
            self.epochs_run[str(trial_dir)] = len(history)
            if len(history) < config.epochs:  # Hyperband may promote it: keep what the next round resumes
                trained.save(trial_dir / KT_MODEL)
                (trial_dir / KT_HISTORY).write_text(json.dumps(history))
            return {METRIC: history[-1][METRIC]}

    class DeadlineHyperbandOracle(kt.oracles.HyperbandOracle):
        """Hyperband that creates no trial (new or promoted) after ``deadline``, a Unix time."""

        def __init__(self, *args, deadline: float, **kwargs) -> None:
            self.deadline = deadline
            super().__init__(*args, **kwargs)

        def populate_space(self, trial_id):
            if time.time() >= self.deadline:
                return {"status": "STOPPED"}
            return super().populate_space(trial_id)

    class FerHyperband(kt.Tuner):
        """Hyperband's ``run_trial`` (the round's epochs) plus the trial folders the model
        travels through, and a record of every finished trial."""

        def __init__(self, *args, started: float, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.started = started
            self.results: list[TrialResult] = []

        def run_trial(self, trial, train, val, **kwargs):
            values = trial.hyperparameters.values
            past = values.get("tuner/trial_id")
            return super().run_trial(trial, train, val, epochs=values["tuner/epochs"],
                                     initial_epoch=values["tuner/initial_epoch"],
                                     trial_dir=Path(self.get_trial_dir(trial.trial_id)),
                                     past_dir=Path(self.get_trial_dir(past)) if past else None, **kwargs)

        def on_trial_end(self, trial) -> None:
            super().on_trial_end(trial)
            self.results.append(self._result(self.oracle.get_trial(trial.trial_id)))

        def _result(self, trial) -> TrialResult:
            values = trial.hyperparameters.values
            ok = trial.status == "COMPLETED"
            epochs = self.hypermodel.epochs_run.get(str(Path(self.get_trial_dir(trial.trial_id))),
                                                    values.get("tuner/epochs", 0))
            epochs = int(epochs) if ok else 0
            config = None
            with contextlib.suppress(ConfigError):
                config = _kt_config(trial.hyperparameters, self.hypermodel.ctx).to_dict()
            status = "failed" if not ok else "completed" if epochs >= self.hypermodel.ctx.max_epochs else "stopped_early"
            message = (trial.message or "unknown error").strip().splitlines()
            return TrialResult(trial_id=trial.trial_id, finished_s=time.time() - self.started,
                               val_accuracy=float(trial.score) if ok and trial.score is not None else None,
                               epochs=epochs, status=status, config=config, continues=values.get("tuner/trial_id"),
                               error=None if ok else message[-1])

    return FerHyperModel, DeadlineHyperbandOracle, FerHyperband


ARMS: dict[str, Callable[[Context, int, Path], ArmResult]] = {
    "fertune": arm_fertune, "kerastuner": arm_kerastuner, "optuna": arm_optuna, "ray_random": arm_ray_random}


def train_config(params: Optional[dict[str, Any]], max_epochs: int) -> Optional[dict[str, Any]]:
    """A searched parameter dict as a full TrainConfig dict with the whole epoch budget, in
    passes over the training faces (a FER Tune trial's rounds dropped), as every arm's winner retrains."""
    if params is None:
        return None
    try:
        return _with_epochs(to_config(params).to_dict(), max_epochs)
    except ConfigError:
        return None


def _with_epochs(config: dict[str, Any], max_epochs: int) -> dict[str, Any]:
    return {**config, "epochs": max_epochs, "round_images": 0}


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
