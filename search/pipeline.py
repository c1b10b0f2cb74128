"""A run's stages as functions of explicit settings: the data, the run's state and budget, the
search, and what follows it (confirmation, final model, export).

``python -m search.run`` calls them in order; ``experiments.compare_tuners`` and the tests
call the same functions, so that FER Tune is measured as it runs. Each stage takes the
data's splits, the run folder, the settings and the run's :class:`search.budget.Budget`, and
hands the next one records (:mod:`search.records`); only the first two read the checked
command line (:class:`search.cli.Command`).
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
from pathlib import Path
from typing import Any, Optional

from fer_core.config import TrainConfig
from fer_core.data import load
from fer_core.dataset import Dataset
from fer_core.errors import ConfigError
from fer_core.evaluate import evaluate_predictions
from fer_core.export import export_model
from fer_core.runtime import predict_proba
from fer_core.splits import Splits, make_splits
from fer_core.train import seed_faces_per_s
from search.budget import RAY_START_S, Budget, check_budget, now
from search.cli import Command
from search.final.confirm import confirm_leaders, folds_of
from search.final.ranking import pick_members
from search.final.retrain import MEMBERS_SHARE_ONE_SLOT, build_final_model, plan_final
from search.records import Confirmation, FinalModel, Finished, TrialRecord
from search.report.final_run import write_final_run
from search.report.plots import plot_confusion
from search.rundir import BEST_DIR, FINAL_DIR, TENSORBOARD_DIR, read_state, write_state
from search.settings import RunSettings
from search.tuning.prior import measured_flops_per_s, pack_members, prior_points, search_pays, training_seconds
from search.tuning.trials import trial_record

log = logging.getLogger("search.pipeline")


def load_and_split(command: Command, begun: Optional[float] = None) -> tuple[Dataset, Splits, RunSettings]:
    """The data set, its three parts, and the settings sized for its training part
    (:meth:`search.settings.RunSettings.sized_for`: on a large one, trials in rounds, said in the
    log); too few subjects for the confirmation's folds is said now, and, given when the run
    ``begun``, a new run's time budget too short for one trial (:func:`search.budget.check_budget`),
    so that either is the only line the run prints."""
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
    settings = command.settings.sized_for(len(splits.train))
    if begun is not None and not command.resume:
        check_budget(settings.time_budget_s, now() - begun + RAY_START_S, confirm=settings.confirm.configs != 0)
    log.info("data: %s; split %s: %d train, %d validation, %d test", data.describe(), splits.method,
             len(splits.train), len(splits.val), len(splits.test))
    search = settings.search
    if search.round_images:
        log.info("%d training faces: trials report and are judged every %d of them, up to %d rounds (%d passes)",
                 len(splits.train), search.round_images, search.max_rounds, search.max_epochs)
    return data, splits, settings


def open_state(command: Command, data: Dataset, **extra: Any) -> dict[str, Any]:
    """The run's saved state (``run.json``): new, with the defining flags, the data's fingerprint and
    ``extra``; or the resumed run's, whose data must not have changed."""
    fingerprint = data.fingerprint()  # hashes every image: once per run
    if command.resume:
        state = read_state(command.run_dir)
        if state["fingerprint"] != fingerprint:
            raise ConfigError(f"--resume: the data at {command.data} changed since run {command.name} started")
        return state
    command.run_dir.mkdir(parents=True, exist_ok=True)
    state = {"args": command.defining, "fingerprint": fingerprint, **extra}
    write_state(command.run_dir, state)
    return state


def open_run(command: Command, data: Dataset, settings: RunSettings, startup_s: float) -> Budget:
    """The run's saved state and its time budget: new (the budget planned from the ``startup_s``
    measured), or the resumed run's, whose data must not have changed."""
    open_state(command, data)
    if command.resume:
        return Budget.load(command.run_dir)
    budget = Budget.plan(command.run_dir, settings.time_budget_s, startup_s, confirm=settings.confirm.configs != 0)
    if budget.shares:
        shares = budget.shares
        by_default = not command.budget_given and shares.total_s == settings.small_data_budget_s
        log.info("time budget %.0f s%s: search %.0f s, confirmation %.0f s, final model %.0f s (start-up took %.0f s)",
                 shares.total_s, ", a small data set's default (--time-budget none: no bound)" if by_default else "",
                 shares.search_s, shares.confirm_s, shares.final_s, shares.startup_s)
    return budget


def search_skipped(settings: RunSettings, splits: Splits, budget: Budget) -> Optional[str]:
    """Why the run trains the built-in prior's configs instead of searching (the search's share
    of the budget too short for one to pay: :func:`search.tuning.prior.search_pays`), said in the
    log; None when it searches."""
    shares = budget.shares
    if shares is None:
        return None
    left = max(0.0, shares.search_s - budget.search_spent_s)
    why = search_pays(settings.search, prior_points(settings.search), left, len(splits.train))
    if why:
        log.warning("no search: %s; the time budget trains the built-in prior's configs instead "
                    "(a longer --time-budget searches)", why)
    return why


def search_trials(settings: RunSettings, run_dir: Path, splits: Splits, budget: Budget,
                  resume: bool = False) -> list[TrialRecord]:
    """Run (or resume) the Tune search within what the ``budget`` left it, starting no trial after
    its deadline and stopping running ones at their next epoch after it; return every trial's record."""
    # Ray Tune is imported only here: 1.7 s that --help and a bad flag do without, and Ray must not
    # be imported before search.cluster.start_ray has chosen its authentication mode
    import ray

    from search.tuning.tuner import run_search

    budget.start_search()
    on_ctrl_c = signal.getsignal(signal.SIGINT)
    try:
        analysis = run_search(settings.search, run_dir, splits, budget, resume=resume)
    finally:
        budget.note_search_time()
        if threading.current_thread() is threading.main_thread():
            # Tune leaves its own handler, which would swallow the first Ctrl-C of the stages after the search
            signal.signal(signal.SIGINT, on_ctrl_c)
    node_ips = {node["NodeID"]: node["NodeManagerAddress"] for node in ray.nodes()}
    return [trial_record(t, settings.search.metric, settings.search.max_t, node_ips) for t in analysis.trials]


def search_interrupted(trials: list[TrialRecord], settings: RunSettings, budget: Budget) -> bool:
    """Whether the search stopped before its end: a trial unfinished, or fewer trials than asked
    before the budget's deadline had passed."""
    unfinished = any(t.status == "unfinished" for t in trials)
    return unfinished or (len(trials) < settings.search.trials and not budget.search_over())


def finish(settings: RunSettings, run_dir: Path, data: Dataset, splits: Splits, trials: list[TrialRecord],
           budget: Budget, export: bool = True, skipped: Optional[str] = None) -> Optional[Finished]:
    """What follows the search: the leading configs confirmed within the budget's share, the final
    model planned in what is left and built from the best, tested once and (with ``export``)
    exported; None when no trial left a config to build it from. A run that did not search
    (``skipped`` says why) trains the prior's configs (``trials``) for the whole budget instead."""
    if skipped is not None:
        return train_prior(settings, run_dir, data, splits, trials, budget, skipped, export=export)
    started = now()
    try:
        confirmation = confirm_trials(settings, run_dir, splits, trials, budget.confirm_deadline())
    finally:  # an interrupted confirmation's time counts too: its finished trainings are kept
        budget.note_confirm_time(now() - started)
    members = final_members(settings, splits, trials, confirmation)
    if not members:
        return None
    settings = plan_final_stage(settings, splits, trials, members, budget.final_seconds())
    return build_and_export(settings, run_dir, data, splits, members, confirmation, export=export)


def confirm_trials(settings: RunSettings, run_dir: Path, splits: Splits, trials: list[TrialRecord],
                   deadline: float) -> Confirmation:
    """The leading configs cross-validated over train + validation, as many as fit before ``deadline``
    (:meth:`search.budget.Budget.confirm_deadline`; infinity: all) (:mod:`search.final.confirm`)."""
    return confirm_leaders(trials, splits, settings.confirm, settings.search.resources, run_dir,
                           settings.final.ensemble, deadline, init=settings.search.init,
                           cost_weight=settings.search.cost_weight, slots=settings.search.slots)


def final_members(settings: RunSettings, splits: Splits, trials: list[TrialRecord],
                  confirmation: Confirmation) -> list[TrialRecord]:
    """The trials the final model is built from: the confirmation's order, then the search's."""
    return pick_members(trials, confirmation.ranked, settings.final.ensemble, exclude=confirmation.excluded,
                        cost_weight=settings.search.cost_weight, faces=len(splits.val))


def plan_final_stage(settings: RunSettings, splits: Splits, trials: list[TrialRecord], members: list[TrialRecord],
                     seconds: float) -> RunSettings:
    """The settings with the final stage that fits in ``seconds``
    (:meth:`search.budget.Budget.final_seconds`, the same in a resumed run; infinity: as asked)
    (:func:`search.final.retrain.plan_final`),
    its estimate in the log."""
    n_rest = len(splits.train) + len(splits.val)
    final, estimate = plan_final(trials, members, settings.final, n_rest, len(splits.train), settings.search.slots,
                                 seconds)
    if final != settings.final:
        log.info("the final stage is sized to the %.0f s left for it: %d member(s) at %gx their epochs "
                 "(instead of %d at %gx)", seconds, final.ensemble, final.epochs_scale, settings.final.ensemble,
                 settings.final.epochs_scale)
    log.info("the final stage will take about %s", f"{estimate:.0f} s" if estimate < 90 else f"{estimate / 60:.0f} min")
    return dataclasses.replace(settings, final=final)


def train_prior(settings: RunSettings, run_dir: Path, data: Dataset, splits: Splits, prior: list[TrialRecord],
                budget: Budget, skipped: str, export: bool = True) -> Finished:
    """The final model of a run too short to search: the ``prior``'s configs packed on the slots that
    the seed's recipe leaves (:func:`search.tuning.prior.pack_members`), up to the final stage's
    members, each for at most its config's member length and its final stage's epochs, from this
    machine's rate, measured once per run (:meth:`search.budget.Budget.seed_pace`)."""
    threads = settings.search.resources.threads
    faces_s = budget.seed_pace(lambda: seed_faces_per_s(threads))  # kept for a resumed run's plan
    rate = measured_flops_per_s(faces_s, threads)
    seconds = budget.final_seconds()
    seed_s = training_seconds(TrainConfig(), len(splits.train) + len(splits.val), threads, rate)
    slots = settings.search.slots
    # the seed's recipe starts first on the last slot; with one slot the members come first, in their share
    starts, ends = (([0.0] * (slots - 1) + [seed_s], [seconds] * slots) if slots > 1
                    else ([0.0], [MEMBERS_SHARE_ONE_SLOT * seconds]))
    most_rounds = max(1, round(settings.search.max_t * settings.final.epochs_scale))
    planned = pack_members(prior, starts, ends, threads, rate, most=settings.final.ensemble, most_rounds=most_rounds)
    members = [p.record for p in planned]
    final = dataclasses.replace(settings.final, ensemble=len(members), epochs_scale=1.0)  # the rounds are planned
    settings = dataclasses.replace(settings, final=final)
    confirmation = Confirmation(folds=0, n_scored=0, ranked=tuple(prior), scores={}, seconds=0.0, skipped=skipped)
    log.info("the seed's CNN trains %.0f faces/s on %d thread(s) here; the %.0f s left train the prior's %s "
             "(for %s s) and the seed's recipe (about %.0f s)", faces_s, threads, seconds,
             ", ".join(m.trial_id for m in members), ", ".join(f"{p.seconds:.0f}" for p in planned), seed_s)
    return build_and_export(settings, run_dir, data, splits, members, confirmation, export=export,
                            deadline=now() + seconds, lengths=[p.seconds for p in planned])


def build_and_export(settings: RunSettings, run_dir: Path, data: Dataset, splits: Splits,
                     members: list[TrialRecord], confirmation: Confirmation, export: bool = True,
                     deadline: Optional[float] = None, lengths: Optional[list[float]] = None) -> Finished:
    """Retrain ``members`` (the first ``settings.final.ensemble``) into the final model, each within
    ``deadline`` if given and leaving its state in ``run_dir/final`` (a resumed run's go on from
    theirs), test it once on the held-out split, export it (unless not ``export``: an outer fold's
    model is a measurement), and write TensorBoard's ``final`` run."""
    clock = now()
    members = members[:settings.final.ensemble]
    final = build_final_model(members, splits, settings.final, settings.search.resources, init=settings.search.init,
                              deadline=deadline, slots=settings.search.slots, checkpoints=run_dir / FINAL_DIR,
                              lengths=lengths)
    probabilities = predict_proba(final.model, splits.test.images)
    test = evaluate_predictions(splits.test.labels, probabilities.argmax(axis=1), data.class_names)
    timings = {"retrain_s": now() - clock}
    clock = now()
    if export:
        _export(final, members[0], settings, run_dir, data, splits, test)
    write_final_run(run_dir / TENSORBOARD_DIR / "final", final.kept[0].history,
                    data.class_names, plot_confusion(test["confusion_matrix"], data.class_names))
    timings["export_s"] = now() - clock
    return Finished(confirmation, final, tuple(members), test, timings | {"confirm_s": confirmation.seconds})


def _export(final: FinalModel, best: TrialRecord, settings: RunSettings, run_dir: Path, data: Dataset,
            splits: Splits, test: dict) -> None:
    """The final model, its forms and its card (``best``'s config), in ``run_dir/best``."""
    export_model(final.model, run_dir / BEST_DIR, data.class_names, best.train_config.to_dict(),
                 metrics={f"test_{k}": test[k] for k in ("accuracy", "macro_f1", "balanced_accuracy")}
                 | {"split": splits.method},
                 data_fingerprint=splits.train.fingerprint(splits.val),
                 extra={"trained_on": f"{data.source}: train + validation of the {splits.method} split",
                        "ensemble": [{"trial_id": m.trial.trial_id, "config": m.config.to_dict()}
                                     for m in final.kept],
                        "test_time_augmentation": "mean of each member's probabilities on the image and its "
                                                  "left-right mirror",
                        "initialized_from": settings.search.init.summary() if settings.search.init else None},
                 faces="whole" if data.faces is not None and data.faces.asked == "none" else "crop")

