"""The run's report: the :class:`search.records.Report` built from the stages' records, and its
files (``report.json`` for machines, ``report.md`` and plots for people).

Files are written to temporary names and renamed into place, plots first and
``report.json`` last, so a report that exists is a complete one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Optional, Sequence

from fer_core.config import TrainConfig
from fer_core.dataset import Dataset
from fer_core.evaluate import SEED_BASELINE_ACCURACY
from fer_core.splits import Splits
from fer_core.staging import write_atomic
from search.budget import BudgetPlan
from search.records import Finished, FoldsReport, Report, TrialRecord
from search.report.markdown import render_folds_markdown, render_markdown
from search.report.plots import plot_confusion, plot_importance, plot_learning_curves, plot_search_history
from search.rundir import BEST_DIR
from search.settings import RunSettings
from search.tuning.trials import plain

PLOTS = "plots"


def build_report(name: str, settings: RunSettings, data: Dataset, splits: Splits, trials: Sequence[TrialRecord],
                 finished: Finished, search_seconds: float, timings: Mapping[str, float],
                 budget_plan: Optional[BudgetPlan] = None) -> Report:
    """The run's report: data and split, the test figures of the final model, the seed's recipe and
    the majority class side by side, the confirmation, the members, every trial; ``budget_plan``:
    the time budget's shares, if the run had one."""
    test, final, best = finished.test, finished.final, finished.members[0]
    seed_test = final.seed_recipe.get("metrics")
    faces = data.faces
    return Report(
        name=name, data=data.source, n_images=len(data), split=splits.method,
        faces=None if faces is None else {"mode": faces.mode, "asked": faces.asked, "cropped": faces.cropped,
                                          "no_face": list(faces.no_face), "summary": faces.describe()},
        n_train=len(splits.train), n_val=len(splits.val), n_test=len(splits.test),
        metric=settings.search.metric, max_epochs=settings.search.max_epochs,
        round_images=settings.search.round_images, cost_weight=settings.search.cost_weight,
        seed=settings.search.seed,
        time_budget_s=budget_plan.total_s if budget_plan else None,
        budget_plan=budget_plan.to_json() if budget_plan else None,
        initialized_from=settings.search.init.summary() if settings.search.init else None,
        test_accuracy=test["accuracy"], test_macro_f1=test["macro_f1"],
        test_balanced_accuracy=test["balanced_accuracy"], test_accuracy_ci95=tuple(test["accuracy_ci95"]),
        majority_accuracy=test["majority_accuracy"], seed_baseline_accuracy=SEED_BASELINE_ACCURACY,
        seed_recipe_test_accuracy=seed_test["accuracy"] if seed_test else None,
        seed_recipe_test_macro_f1=seed_test["macro_f1"] if seed_test else None,
        seed_recipe_failed=final.seed_recipe.get("failed"),
        seed_recipe_epochs=len(final.seed_recipe.get("history") or ()) or settings.final.seed_epochs
        or TrainConfig().epochs,
        search_skipped=finished.confirmation.skipped if trials and trials[0].status == "prior" else None,
        trials_completed=sum(t.status in ("completed", "stopped_early") for t in trials),
        trials_stopped_early=sum(t.status == "stopped_early" for t in trials),
        trials_failed=sum(t.status == "failed" for t in trials),
        best_trial_id=best.trial_id, best_val_metric=best.final_metric, best_config=best.train_config.to_dict(),
        confirmation=finished.confirmation.to_json(),
        final_epochs_scale=settings.final.epochs_scale, final_mixup=settings.final.mixup,
        final_inputs=list(settings.final.inputs),
        ensemble=[m.to_json() for m in final.kept], ensemble_dropped=list(final.dropped),
        search_wall_clock_s=round(search_seconds, 1),
        timings={k: round(v, 2) for k, v in timings.items()},
        test=dict(test), seed_recipe_test=seed_test, trials=tuple(trials),
        exported={"dir": BEST_DIR, "keras": f"{BEST_DIR}/model.keras", "saved_model": f"{BEST_DIR}/saved_model",
                  "tflite": f"{BEST_DIR}/model.tflite", "model_card": f"{BEST_DIR}/model_card.json"})


def write_report(run_dir: Path, report: Report, final_history: Sequence[Mapping[str, float]]) -> dict[str, Path]:
    """Write plots, ``report.md`` and then ``report.json`` into ``run_dir``; return their paths."""
    plots_dir = run_dir / PLOTS
    plots_dir.mkdir(exist_ok=True)
    plots = {
        "search_history": plot_search_history(report.trials, report.metric),
        "importance": plot_importance(report.trials, report.metric),
        "learning_curves": plot_learning_curves(final_history, report.trials, report.metric),
        "confusion_matrix": plot_confusion(report.test["confusion_matrix"], report.test["class_names"]),
    }
    paths = {}
    for name, png in plots.items():
        if png is not None:
            paths[name] = plots_dir / f"{name}.png"
            write_atomic(paths[name], png)
    write_atomic(run_dir / "report.md", render_markdown(report, {k: f"{PLOTS}/{p.name}" for k, p in paths.items()}))
    write_atomic(run_dir / "report.json", json.dumps(report.to_json(), indent=2, default=plain))
    return {**paths, "report.md": run_dir / "report.md", "report.json": run_dir / "report.json"}


def write_folds_report(run_dir: Path, report: FoldsReport) -> dict[str, Path]:
    """Write the pooled confusion matrix, ``report.md`` and then ``report.json`` of a run of the papers'
    protocol into ``run_dir``; return their paths."""
    plots_dir = run_dir / PLOTS
    plots_dir.mkdir(exist_ok=True)
    confusion = plots_dir / "confusion_matrix.png"
    write_atomic(confusion, plot_confusion(report.test["confusion_matrix"], report.test["class_names"]))
    write_atomic(run_dir / "report.md", render_folds_markdown(report, f"{PLOTS}/{confusion.name}"))
    write_atomic(run_dir / "report.json", json.dumps(report.to_json(), indent=2, default=plain))
    return {"confusion_matrix": confusion, "report.md": run_dir / "report.md", "report.json": run_dir / "report.json"}
