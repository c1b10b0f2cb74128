"""A run's stages as functions of explicit settings: search, confirm, final model.

``python -m search.run`` calls them in order; ``experiments.compare_tuners`` and the tests
call the same functions, so that FER Tune is measured as it runs. Each stage takes the
data's splits, the run folder, the settings and the run's :class:`search.budget.Budget`, and
hands the next one records (:mod:`search.records`); none reads the command line.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from fer_core.dataset import Dataset
from fer_core.evaluate import evaluate_predictions
from fer_core.export import export_model
from fer_core.splits import Splits
from fer_core.train import predict_proba
from search.budget import Budget, now
from search.cluster import cluster_slots
from search.final.confirm import confirm_leaders
from search.final.ranking import pick_members
from search.final.retrain import build_final_model, plan_final
from search.records import Confirmation, Finished, TrialRecord
from search.report.final_run import write_final_run
from search.report.plots import plot_confusion
from search.rundir import BEST_DIR, TENSORBOARD_DIR
from search.settings import RunSettings
from search.tuning.trials import trial_record

log = logging.getLogger("search.pipeline")


def sized_settings(settings: RunSettings, splits: Splits) -> RunSettings:
    """The settings for the data's training part (:meth:`search.settings.RunSettings.sized_for`):
    on a large one, trials in rounds, said in the log."""
    n_train = len(splits.train)
    settings = settings.sized_for(n_train)
    search = settings.search
    if search.round_images:
        log.info("%d training faces: trials report and are judged every %d of them, up to %d rounds (%d passes)",
                 n_train, search.round_images, search.max_rounds, search.max_epochs)
    return settings


def search_trials(settings: RunSettings, run_dir: Path, splits: Splits, budget: Budget,
                  resume: bool = False) -> list[TrialRecord]:
    """Run (or resume) the Tune search within what the ``budget`` left it, starting no trial after
    its deadline and stopping running ones at their next epoch after it; return every trial's record."""
    # Ray Tune is imported only here: 1.7 s that --help and a bad flag do without, and Ray must not
    # be imported before search.cluster.start_ray has chosen its authentication mode
    import ray

    from search.tuning.tuner import run_search

    budget.start_search()
    try:
        analysis = run_search(settings.search, run_dir, splits, budget, resume=resume)
    finally:
        budget.note_search_time()
    node_ips = {node["NodeID"]: node["NodeManagerAddress"] for node in ray.nodes()}
    return [trial_record(t, settings.search.metric, settings.search.max_t, node_ips) for t in analysis.trials]


def search_interrupted(trials: list[TrialRecord], settings: RunSettings, budget: Budget) -> bool:
    """Whether the search stopped before its end: a trial unfinished, or fewer trials than asked
    before the budget's deadline had passed."""
    unfinished = any(t.status == "unfinished" for t in trials)
    return unfinished or (len(trials) < settings.search.trials and not budget.search_over())


def confirm_trials(settings: RunSettings, run_dir: Path, splits: Splits, trials: list[TrialRecord],
                   deadline: float) -> Confirmation:
    """The leading configs cross-validated over train + validation, as many as fit before ``deadline``
    (:meth:`search.budget.Budget.confirm_deadline`; infinity: all) (:mod:`search.final.confirm`)."""
    return confirm_leaders(trials, splits, settings.confirm, settings.search.resources, run_dir,
                           settings.final.ensemble, deadline, init=settings.search.init,
                           cost_weight=settings.search.cost_weight)


def final_members(settings: RunSettings, splits: Splits, trials: list[TrialRecord],
                  confirmation: Confirmation) -> list[TrialRecord]:
    """The trials the final model is built from: the confirmation's order, then the search's."""
    return pick_members(trials, confirmation.ranked, settings.final.ensemble, exclude=confirmation.excluded,
                        cost_weight=settings.search.cost_weight, faces=len(splits.val))


def plan_final_stage(settings: RunSettings, splits: Splits, trials: list[TrialRecord], members: list[TrialRecord],
                     budget: Budget, confirm_spent_s: float) -> RunSettings:
    """The settings with the final stage that fits in what the budget left it
    (:func:`search.final.retrain.plan_final`), its estimate in the log."""
    seconds = budget.final_seconds(confirm_spent_s)
    slots = cluster_slots(settings.search.resources)
    n_rest = len(splits.train) + len(splits.val)
    final, estimate = plan_final(trials, members, settings.final, n_rest, len(splits.train), slots, seconds)
    if final != settings.final:
        log.info("the final stage is sized to the %.0f s left for it: %d member(s) at %gx their epochs "
                 "(instead of %d at %gx)", seconds, final.ensemble, final.epochs_scale, settings.final.ensemble,
                 settings.final.epochs_scale)
    log.info("the final stage will take about %s", f"{estimate:.0f} s" if estimate < 90 else f"{estimate / 60:.0f} min")
    return dataclasses.replace(settings, final=final)


def build_and_export(settings: RunSettings, run_dir: Path, data: Dataset, splits: Splits,
                     members: list[TrialRecord]) -> Finished:
    """Retrain ``members`` (the first ``settings.final.ensemble``) into the final model, test it once
    on the held-out split, export it, and write TensorBoard's ``final`` run."""
    clock = now()
    members = members[:settings.final.ensemble]
    final = build_final_model(members, splits, settings.final, settings.search.resources, init=settings.search.init)
    probabilities = predict_proba(final.model, splits.test.images)
    test = evaluate_predictions(splits.test.labels, probabilities.argmax(axis=1), data.class_names)
    timings = {"retrain_s": now() - clock}
    clock = now()
    export_model(final.model, run_dir / BEST_DIR, data.class_names, members[0].train_config.to_dict(),
                 metrics={f"test_{k}": test[k] for k in ("accuracy", "macro_f1", "balanced_accuracy")}
                 | {"split": splits.method},
                 data_fingerprint=splits.train.fingerprint(splits.val),
                 extra={"trained_on": f"{data.source}: train + validation of the {splits.method} split",
                        "ensemble": [{"trial_id": m.trial.trial_id, "config": m.config.to_dict()}
                                     for m in final.kept],
                        "test_time_augmentation": "mean of each member's probabilities on the image and its "
                                                  "left-right mirror",
                        "initialized_from": settings.search.init.summary() if settings.search.init else None})
    write_final_run(run_dir / TENSORBOARD_DIR / "final", final.kept[0].history,
                    data.class_names, plot_confusion(test["confusion_matrix"], data.class_names))
    timings["export_s"] = now() - clock
    return Finished(final, tuple(members), test, timings)
