"""A run's stages as functions of explicit settings: search, confirm, final model.

``python -m search.run`` calls them in order; ``experiments.compare_tuners`` and the tests
call the same functions, so that FER Tune is measured as it runs. Each stage takes the
data's splits, the run folder and a settings object; none reads the command line.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Optional

from fer_core.dataset import Dataset
from fer_core.splits import Splits
from search.confirm import Confirmation, confirm_leaders
from search.final import Finished
from search.settings import RunSettings

log = logging.getLogger("search.pipeline")


def sized_settings(settings: RunSettings, splits: Splits) -> RunSettings:
    """The settings for the data's training part: on a large one, trials in rounds
    (:meth:`search.tuner.SearchSettings.sized_for`), said in the log; on a small one without a
    budget given, the default budget (:meth:`search.settings.RunSettings.budget_for`)."""
    import dataclasses

    n_train = len(splits.train)
    search = settings.search.sized_for(n_train)
    if search.round_images:
        log.info("%d training faces: trials report and are judged every %d of them, up to %d rounds (%d passes)",
                 n_train, search.round_images, search.max_rounds, search.max_epochs)
    return dataclasses.replace(settings, search=search, time_budget_s=settings.budget_for(n_train))


def search_trials(settings: RunSettings, run_dir: Path, splits: Splits, search_s: Optional[float] = None,
                  resume: bool = False, share_s: Optional[float] = None) -> list[dict]:
    """Run (or resume) the Tune search, starting no trial after ``search_s`` seconds from now and
    stopping running ones at their next epoch after it; return every trial as
    :func:`search.report.trial_record` lists it. ``share_s``: the search's whole share of the
    budget, of which ``search_s`` is what is left (default: all of it)."""
    import ray

    from search.deadline import write_deadline
    from search.report import trial_record
    from search.tuner import random_start_left, run_search

    now = time.time()
    if search_s is None:
        write_deadline(run_dir, None)
    else:
        left = max(0.0, search_s)
        write_deadline(run_dir, now + left, now + random_start_left(left, share_s))
    analysis = run_search(settings.search, run_dir, splits, search_s, resume=resume)
    node_ips = {node["NodeID"]: node["NodeManagerAddress"] for node in ray.nodes()}
    return [trial_record(t, settings.search.metric, settings.search.max_t, node_ips) for t in analysis.trials]


def confirm_trials(settings: RunSettings, run_dir: Path, splits: Splits, trials: list[dict],
                   deadline: Optional[float] = None) -> Confirmation:
    """The leading configs cross-validated over train + validation (:mod:`search.confirm`)."""
    return confirm_leaders(trials, splits, settings.confirm, settings.search.resources, run_dir,
                           settings.final.ensemble, deadline, init=settings.search.init,
                           cost_weight=settings.search.cost_weight)


def final_members(settings: RunSettings, splits: Splits, trials: list[dict],
                  confirmation: Confirmation) -> list[dict]:
    """The configs the final model is built from: the confirmation's order, then the search's."""
    from search.ranking import pick_members

    return pick_members(trials, confirmation.ranked, settings.final.ensemble, exclude=confirmation.excluded,
                        cost_weight=settings.search.cost_weight, faces=len(splits.val))


def plan_final_stage(settings: RunSettings, splits: Splits, trials: list[dict], members: list[dict],
                     final_s: Optional[float]) -> RunSettings:
    """The settings with the final stage that fits in ``final_s`` seconds (:func:`search.final.plan_final`),
    its estimate in the log."""
    import dataclasses

    from search.final import plan_final
    from search.tuner import cluster_slots

    slots = cluster_slots(settings.search.resources)
    n_rest = len(splits.train) + len(splits.val)
    final, estimate = plan_final(trials, members, settings.final, n_rest, len(splits.train), slots, final_s)
    if final != settings.final:
        log.info("the final stage is sized to the %.0f s left for it: %d member(s) at %gx their epochs "
                 "(instead of %d at %gx)", final_s, final.ensemble, final.epochs_scale, settings.final.ensemble,
                 settings.final.epochs_scale)
    log.info("the final stage will take about %s", f"{estimate:.0f} s" if estimate < 90 else f"{estimate / 60:.0f} min")
    return dataclasses.replace(settings, final=final)


def build_and_export(settings: RunSettings, run_dir: Path, data: Dataset, splits: Splits,
                     members: list[dict]) -> Finished:
    """Retrain ``members`` (the first ``settings.final.ensemble``) into the final model, test it once
    on the held-out split, export it, and write TensorBoard's ``final`` run."""
    from fer_core.evaluate import evaluate_predictions
    from fer_core.export import export_model
    from fer_core.runtime import predict_proba
    from search.final import build_final_model
    from search.report import plot_confusion
    from search.rundir import BEST_DIR, TENSORBOARD_DIR
    from search.space import to_config
    from search.tensorboard import write_final_run

    clock = time.perf_counter()
    members = members[:settings.final.ensemble]
    final = build_final_model(members, splits, settings.final, settings.search.resources, init=settings.search.init)
    probabilities = predict_proba(final.model, splits.test.images)
    test = evaluate_predictions(splits.test.labels, probabilities.argmax(axis=1), data.class_names)
    timings = {"retrain_s": time.perf_counter() - clock}
    clock = time.perf_counter()
    export_model(final.model, run_dir / BEST_DIR, data.class_names, to_config(members[0]["config"]).to_dict(),
                 metrics={f"test_{k}": test[k] for k in ("accuracy", "macro_f1", "balanced_accuracy")}
                 | {"split": splits.method},
                 data_fingerprint=splits.train.fingerprint(splits.val),
                 extra={"trained_on": f"{data.source}: train + validation of the {splits.method} split",
                        "ensemble": [{"trial_id": m["trial"]["trial_id"], "config": m["config"].to_dict()}
                                     for m in final.kept],
                        "test_time_augmentation": "mean of each member's probabilities on the image and its "
                                                  "left-right mirror",
                        "initialized_from": settings.search.init.summary() if settings.search.init else None})
    write_final_run(run_dir / TENSORBOARD_DIR / "final", final.kept[0]["result"]["history"],
                    data.class_names, plot_confusion(test["confusion_matrix"], data.class_names))
    timings["export_s"] = time.perf_counter() - clock
    return Finished(final, members, test, timings)
