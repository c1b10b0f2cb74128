"""The search's report: ``report.json`` for machines, ``report.md`` and plots for people.

Files are written to temporary names and renamed into place, plots first and
``report.json`` last, so a report that exists is a complete one.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

import numpy as np

from search.budget import epoch_seconds
from search.rundir import BEST_DIR, TENSORBOARD_DIR, write_atomic

if TYPE_CHECKING:
    from fer_core.dataset import Dataset
    from fer_core.splits import Splits
    from search.budget import BudgetPlan
    from search.confirm import Confirmation
    from search.final import Finished
    from search.settings import RunSettings

PLOTS = "plots"
HISTORY_FIELDS = ("epoch", "val_accuracy", "val_macro_f1", "val_loss", "train_loss", "train_accuracy",
                  "learning_rate", "train_seconds", "val_seconds", "time_total_s", "node_id", "restored_from_epoch")


# ----------------------------------------------------------------------------- trial records

def trial_record(trial, metric: str, max_epochs: int, node_ips: Optional[Mapping[str, str]] = None) -> dict[str, Any]:
    """One trial as the report lists it: config, final and best metric, epochs, status, node.

    ``status`` is ``completed`` (ran its whole epoch budget, or its config's fewer epochs), ``stopped_early`` (ASHA ended
    it), ``failed`` (it raised: ``error`` holds the reason) or ``unfinished``.
    """
    last = dict(trial.last_result or {})
    history = trial_history(trial)
    values = [row[metric] for row in history if _finite(row.get(metric))]
    epochs = int(last.get("training_iteration", len(history)) or 0)
    if trial.status == "ERROR":
        status = "failed"
    elif trial.status == "TERMINATED":
        own = int(trial.config.get("epochs") or max_epochs)  # the fine-tuning space searches a trial's epochs
        status = "completed" if epochs >= min(max_epochs, own) else "stopped_early"
    else:
        status = "unfinished"
    return {
        "trial_id": trial.trial_id,
        "status": status,
        "config": {k: _plain(v) for k, v in trial.config.items()},
        "final_metric": values[-1] if values else None,
        "best_metric": max(values) if values else None,
        "epochs": epochs,
        "node_ip": (node_ips or {}).get(last.get("node_id"), last.get("node_ip")),
        "node_id": last.get("node_id"),
        "tf_threads": last.get("tf_threads"),
        "error": _error_text(trial) if status == "failed" else None,
        "history": history,
    }


def trial_file(trial, name: str) -> Optional[Path]:
    """A file of the trial's folder, where Tune wrote it.

    ``trial.local_path`` is in the current Ray session's folder, which Tune writes first and
    syncs to the run's ``tune/`` folder (``trial.path``); it holds only the trials of this
    session. After ``--resume`` the trials finished before the interruption are in the
    run's folder alone.
    """
    for folder in (trial.local_path, trial.path):
        if folder and (Path(folder) / name).is_file():
            return Path(folder) / name
    return None


def trial_history(trial) -> list[dict[str, float]]:
    """The per-epoch results of a trial, read from its ``result.json`` (Tune's own log), an epoch
    once: a trial restored from its checkpoint (a lost node, a killed driver) reports again
    the epochs after it, and those replace the lost attempt's."""
    path = trial_file(trial, "result.json")
    rows: list[dict[str, float]] = []
    if path is not None:
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a crash
            epoch = row.get("epoch")
            while rows and epoch is not None and rows[-1].get("epoch", -1) >= epoch:
                rows.pop()
            rows.append({k: row[k] for k in HISTORY_FIELDS if k in row})
    return rows


def _error_text(trial) -> str:
    path = trial_file(trial, "error.txt")
    text = path.read_text() if path is not None else str(getattr(trial, "error_msg", "") or "unknown error")
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    # the last line of a traceback names the exception and its message
    return lines[-1][:500] if lines else "unknown error"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


# ----------------------------------------------------------------------------- writing

def build_report(name: str, settings: "RunSettings", data: "Dataset", splits: "Splits", trials: list[dict],
                 confirmation: "Confirmation", finished: "Finished", search_seconds: float,
                 timings: Mapping[str, float], plan: Optional["BudgetPlan"] = None) -> dict[str, Any]:
    """The run's ``report.json``: data and split, the test figures of the final model, the seed's
    recipe and the majority class side by side, the confirmation, the members, every trial."""
    from fer_core.config import TrainConfig
    from fer_core.evaluate import SEED_BASELINE_ACCURACY
    from search.space import to_config

    test, final, best = finished.test, finished.final, finished.members[0]
    seed_test = final.seed_recipe.get("metrics")
    return {
        "name": name, "data": data.source, "n_images": len(data), "split": splits.method,
        "faces": None if data.faces is None else {"mode": data.faces.mode, "asked": data.faces.asked,
                                                  "cropped": data.faces.cropped, "no_face": list(data.faces.no_face),
                                                  "summary": data.faces.describe()},
        "n_train": len(splits.train), "n_val": len(splits.val), "n_test": len(splits.test),
        "metric": settings.search.metric, "max_epochs": settings.search.max_epochs,
        "round_images": settings.search.round_images, "cost_weight": settings.search.cost_weight,
        "seed": settings.search.seed,
        "time_budget_s": plan.total_s if plan else None, "budget_plan": plan.to_dict() if plan else None,
        "initialized_from": settings.search.init.summary() if settings.search.init else None,
        "test_accuracy": test["accuracy"], "test_macro_f1": test["macro_f1"],
        "test_balanced_accuracy": test["balanced_accuracy"], "test_accuracy_ci95": test["accuracy_ci95"],
        "majority_accuracy": test["majority_accuracy"], "seed_baseline_accuracy": SEED_BASELINE_ACCURACY,
        "seed_recipe_test_accuracy": seed_test["accuracy"] if seed_test else None,
        "seed_recipe_test_macro_f1": seed_test["macro_f1"] if seed_test else None,
        "seed_recipe_failed": final.seed_recipe.get("failed"),
        "seed_recipe_epochs": settings.final.seed_epochs or TrainConfig().epochs,
        "trials_completed": sum(t["status"] in ("completed", "stopped_early") for t in trials),
        "trials_stopped_early": sum(t["status"] == "stopped_early" for t in trials),
        "trials_failed": sum(t["status"] == "failed" for t in trials),
        "best_trial_id": best["trial_id"], "best_val_metric": best["final_metric"],
        "best_config": to_config(best["config"]).to_dict(), "confirmation": confirmation.summary(),
        "final_epochs_scale": settings.final.epochs_scale, "final_mixup": settings.final.mixup,
        "final_inputs": list(settings.final.inputs),
        "ensemble": [{"trial_id": m["trial"]["trial_id"], "normalize": m["config"].normalize,
                      "val_metric": m["trial"]["final_metric"],
                      "epochs": m["config"].epochs, "seed": m["config"].seed, "attempts": m["attempts"],
                      "test_accuracy": m["result"]["metrics"]["accuracy"],
                      "test_macro_f1": m["result"]["metrics"]["macro_f1"]}
                     for m in final.kept],
        "ensemble_dropped": final.dropped,
        "search_wall_clock_s": round(search_seconds, 1),
        "timings": {k: round(v, 2) for k, v in timings.items()},
        "test": test, "seed_recipe_test": seed_test,
        "trials": trials,
        "exported": {"dir": BEST_DIR, "keras": f"{BEST_DIR}/model.keras", "saved_model": f"{BEST_DIR}/saved_model",
                     "tflite": f"{BEST_DIR}/model.tflite", "model_card": f"{BEST_DIR}/model_card.json"},
    }


def summary_text(report: Mapping[str, Any], run_dir: Path) -> str:
    """The few lines the command prints at the end: the final model against the seed's recipe and
    the majority class, and where to look next."""
    pct = _pct
    low, high = report["test_accuracy_ci95"]
    seed = (f"test accuracy {pct(report['seed_recipe_test_accuracy'])}, "
            f"macro-F1 {report['seed_recipe_test_macro_f1']:.3f}" if report["seed_recipe_test_accuracy"] is not None
            else f"not available ({report['seed_recipe_failed']})")
    return "\n".join([
        f"\nFER Tune: {report['trials_completed']} trials completed, {report['trials_failed']} failed, "
        f"search {report['search_wall_clock_s']:.0f} s, split {report['split']}"
        + (f", fine-tuned from {report['initialized_from']['source']}" if report.get("initialized_from") else ""),
        f"  final model   test accuracy {pct(report['test_accuracy'])} (95% CI {pct(low)}-{pct(high)}), "
        f"macro-F1 {report['test_macro_f1']:.3f} (ensemble of {len(report['ensemble'])} networks of the best "
        f"configs on {' and '.join(report['final_inputs'])} faces, mirror test-time augmentation)",
        f"  seed recipe   {seed} (the notebook reported {report['seed_baseline_accuracy']:.0%}"
        + (f"; {report['seed_recipe_epochs']} of its 20 epochs, to fit the time budget"
           if report.get("seed_recipe_epochs", 20) != 20 else "") + ")",
        f"  majority class {pct(report['majority_accuracy'])}",
        f"  report: {run_dir / 'report.md'}",
        f"  model:  {run_dir / BEST_DIR}",
        f"  tensorboard --logdir {run_dir / TENSORBOARD_DIR}\n"])


def _init_lines(init: Optional[Mapping[str, Any]]) -> list[str]:
    """What a fine-tuned model started from, so that it is never read as trained from scratch."""
    if not init:
        return []
    test = (init.get("metrics") or {}).get("test_accuracy")
    return [f"Fine-tuned from `{init['source']}` (trained on {init.get('trained_on') or 'unknown data'}, data "
            f"fingerprint {init.get('data_fingerprint')}, its test accuracy {_pct(test)}); the seed's recipe below "
            f"trains from scratch.", ""]


def _pct(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def write_report(run_dir: Path, report: Mapping[str, Any], final_history: Sequence[Mapping[str, float]],
                 metric: str) -> dict[str, Path]:
    """Write plots, ``report.md`` and then ``report.json`` into ``run_dir``; return their paths."""
    plots_dir = run_dir / PLOTS
    plots_dir.mkdir(exist_ok=True)
    plots = {
        "search_history": plot_search_history(report["trials"], metric),
        "importance": plot_importance(report["trials"], metric),
        "learning_curves": plot_learning_curves(final_history, report["trials"], metric),
        "confusion_matrix": plot_confusion(report["test"]["confusion_matrix"], report["test"]["class_names"]),
    }
    paths = {}
    for name, png in plots.items():
        if png is not None:
            paths[name] = plots_dir / f"{name}.png"
            write_atomic(paths[name], png)
    write_atomic(run_dir / "report.md", render_markdown(report, {k: f"{PLOTS}/{p.name}" for k, p in paths.items()}))
    write_atomic(run_dir / "report.json", json.dumps(report, indent=2, default=_plain))
    return {**paths, "report.md": run_dir / "report.md", "report.json": run_dir / "report.json"}


def render_markdown(report: Mapping[str, Any], plots: Mapping[str, str]) -> str:
    """The human report: comparison table, best config, trials, plots."""
    test = report["test"]
    seed = report["seed_recipe_test"] or {"accuracy": None, "macro_f1": None, "balanced_accuracy": None,
                                          "majority_accuracy": None}
    pct = _pct
    f1 = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    lines = [
        f"# FER Tune report: {report['name']}",
        "",
        f"Data: `{report['data']}` ({report['n_images']} images, {len(test['class_names'])} classes); "
        f"split **{report['split']}** ({report['n_train']} train, {report['n_val']} validation, "
        f"{report['n_test']} test). Search metric: `{report['metric']}`.",
        "",
        *_faces_lines(report.get("faces")),
        *_init_lines(report.get("initialized_from")),
        f"Trials: {report['trials_completed']} completed ({report['trials_stopped_early']} stopped early by ASHA), "
        f"{report['trials_failed']} failed, in {report['search_wall_clock_s']:.0f} s."
        + (f" An epoch here is a round of {report['round_images']} training faces: trials are judged every "
           "round, not every pass." if report.get("round_images") else "")
        + (f" Cost weight {report['cost_weight']:g}: validation scores within {report['cost_weight']:g} standard "
           "errors counted as a tie, which a config at least twice as fast won." if report.get("cost_weight") else ""),
        "",
        "## Held-out test split",
        "",
        "| | final model (retrained on train+val) | seed recipe (same split) |",
        "|---|---|---|",
        f"| accuracy | **{pct(test['accuracy'])}** (95% CI {pct(test['accuracy_ci95'][0])}-"
        f"{pct(test['accuracy_ci95'][1])}) | {pct(seed['accuracy'])} |",
        f"| macro-F1 | **{test['macro_f1']:.3f}** | {f1(seed['macro_f1'])} |",
        f"| balanced accuracy | {pct(test['balanced_accuracy'])} | {pct(seed['balanced_accuracy'])} |",
        f"| majority class | {pct(test['majority_accuracy'])} | {pct(seed['majority_accuracy'])} |",
        "",
        f"The seed notebook reported {pct(report['seed_baseline_accuracy'])} on CK+ with a random split."
        + (f" The seed's recipe did not finish its retrain: {report['seed_recipe_failed']}."
           if report.get("seed_recipe_failed") else "")
        + (f" The seed's recipe trained for {report['seed_recipe_epochs']} of its 20 epochs here, to fit the "
           "time budget." if report.get("seed_recipe_epochs", 20) != 20 else ""),
        "",
        f"The final model averages the class probabilities of {len(report['ensemble'])} networks: the best "
        f"trials' configs, each retrained on train + validation{_inputs_words(report)}{_mixup_words(report)} "
        "and shown every face and its mirror image:",
        "",
        "| trial | input | validation | test accuracy alone | test macro-F1 alone |",
        "|---|---|---|---|---|",
        *[f"| {m['trial_id']} | {m.get('normalize', '')} | {m['val_metric']:.4f} | {pct(m['test_accuracy'])} "
          f"| {m['test_macro_f1']:.3f} |" for m in report["ensemble"]],
        *[f"\nTrial {d['trial_id']} left the final model: its retrain {d['reason']}, at seeds "
          f"{', '.join(map(str, d['seeds']))}." for d in report.get("ensemble_dropped", [])],
        "",
        *_confirmation_lines(report.get("confirmation"), pct),
        "## Per class (final model)",
        "",
        "| class | precision | recall | F1 | support |",
        "|---|---|---|---|---|",
    ]
    for name, row in test["per_class"].items():
        lines.append(f"| {name} | {row['precision']:.2f} | {row['recall']:.2f} | {row['f1']:.2f} | {row['support']} |")
    lines += ["", "## Best config", "", "```json", json.dumps(report["best_config"], indent=2), "```", ""]
    for title, key in (("Confusion matrix", "confusion_matrix"), ("Search history", "search_history"),
                       ("Hyperparameter importance", "importance"), ("Learning curves", "learning_curves")):
        if key in plots:
            lines += [f"## {title}", "", f"![{title}]({plots[key]})", ""]
    lines += ["## Trials", "", f"| trial | status | epochs | best {report['metric']} | s an epoch | node |",
              "|---|---|---|---|---|---|"]
    for t in sorted(report["trials"], key=lambda t: -(t["best_metric"] or -1)):
        best = "" if t["best_metric"] is None else f"{t['best_metric']:.4f}"
        extra = f" ({t['error']})" if t["error"] else ""
        seconds = epoch_seconds(t)
        lines.append(f"| {t['trial_id']} | {t['status']}{extra} | {t['epochs']} | {best} | "
                     f"{f'{seconds:.1f}' if seconds else ''} | {t['node_ip']} |")
    return "\n".join(lines) + "\n"


def _faces_lines(faces: Optional[Mapping[str, Any]]) -> list[str]:
    """What loading did about faces (``--faces``), and the images left out without one."""
    if not faces:
        return []
    lines = [f"Faces: {faces['summary']}.", ""]
    if faces["no_face"]:
        shown = ", ".join(f"`{name}`" for name in faces["no_face"][:20])
        more = f" and {len(faces['no_face']) - 20} more" if len(faces["no_face"]) > 20 else ""
        lines += [f"No face was found in: {shown}{more}.", ""]
    return lines


def _inputs_words(report: Mapping[str, Any]) -> str:
    """Which input normalizations the final configs trained on, in words."""
    inputs = report.get("final_inputs") or []
    return f" once on each of {' and '.join(inputs)} faces" if len(inputs) > 1 else ""


def _mixup_words(report: Mapping[str, Any]) -> str:
    """How the final members trained beyond their trials' configs, in words."""
    alpha = report.get("final_mixup")
    return f" with mixup (Beta({alpha:g}, {alpha:g}))" if alpha else ""


def _confirmation_lines(confirmation: Optional[Mapping[str, Any]], pct) -> list[str]:
    """The cross-validated re-ranking of the leading configs (search/confirm.py), if the run had one."""
    if not confirmation:
        return []
    if confirmation.get("skipped"):
        return [f"The best configs were not cross-validated ({confirmation['skipped']}): they are ranked by "
                "their validation figures.", ""]
    lines = ["## Confirmation by cross-validation", "",
             f"The leading configs, each trained {confirmation['folds']} times on folds of train + validation "
             f"and scored on the {confirmation['n_scored']} faces left out in turn "
             f"({confirmation['seconds']:.0f} s); the final model takes them in this order:", "",
             "| trial | validation | cross-validated accuracy | cross-validated macro-F1 | per fold |",
             "|---|---|---|---|---|"]
    for row in confirmation["trials"]:
        if "cv_accuracy" in row:
            folds = ", ".join(pct(a) for a in row["fold_accuracy"])
            lines.append(f"| {row['trial_id']} | {row['val_metric']:.4f} | {pct(row['cv_accuracy'])} | "
                         f"{row['cv_macro_f1']:.3f} | {folds} |")
        else:
            lines.append(f"| {row['trial_id']} | {row['val_metric']:.4f} | "
                         f"{'diverged' if 'diverged' in row else 'not confirmed'} | | |")
    return lines + [""]


# ----------------------------------------------------------------------------- plots

def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _figure().close(fig)
    return buffer.getvalue()


def plot_search_history(trials: Sequence[Mapping[str, Any]], metric: str) -> Optional[bytes]:
    """Each trial's best validation metric in start order, with the running best."""
    values = [t["best_metric"] for t in trials if t["best_metric"] is not None]
    if not values:
        return None
    plt = _figure()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.scatter(range(1, len(values) + 1), values, s=14, label="trial")
    ax.plot(range(1, len(values) + 1), np.maximum.accumulate(values), color="C1", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(metric)
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    return _png(fig)


def importance(trials: Sequence[Mapping[str, Any]], metric: str) -> dict[str, float]:
    """How much each hyperparameter explains the trials' best metric.

    Impurity importance of a random forest fitted to configs against results (the
    idea behind Optuna's fANOVA evaluator); empty with fewer than 4 scored trials.
    """
    from sklearn.ensemble import RandomForestRegressor

    scored = [t for t in trials if t["best_metric"] is not None]
    if len(scored) < 4:
        return {}
    names = sorted({k for t in scored for k in t["config"]})
    columns = []
    for name in names:
        raw = [t["config"].get(name) for t in scored]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw if v is not None):
            columns.append([np.nan if v is None else float(v) for v in raw])
        else:
            levels = sorted({str(v) for v in raw})
            columns.append([float(levels.index(str(v))) for v in raw])
    features = np.nan_to_num(np.array(columns, dtype=float).T, nan=-1.0)
    target = np.array([t["best_metric"] for t in scored])
    forest = RandomForestRegressor(n_estimators=200, random_state=0).fit(features, target)
    ranked = sorted(zip(names, forest.feature_importances_), key=lambda kv: -kv[1])
    return {name: float(value) for name, value in ranked}


def plot_importance(trials: Sequence[Mapping[str, Any]], metric: str) -> Optional[bytes]:
    """Bar chart of :func:`importance`, top 12."""
    ranked = list(importance(trials, metric).items())[:12]
    if not ranked:
        return None
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.barh([n for n, _ in ranked][::-1], [v for _, v in ranked][::-1])
    ax.set_xlabel(f"importance for {metric}")
    return _png(fig)


def plot_learning_curves(final_history: Sequence[Mapping[str, float]], trials: Sequence[Mapping[str, Any]],
                         metric: str) -> Optional[bytes]:
    """Validation curves of the five best trials, and the final model's training curves."""
    plt = _figure()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    top = sorted([t for t in trials if t["best_metric"] is not None], key=lambda t: -t["best_metric"])[:5]
    for t in top:
        rows = [r for r in t["history"] if metric in r]
        left.plot([r["epoch"] for r in rows], [r[metric] for r in rows], label=t["trial_id"])
    left.set_title(f"best trials: {metric}")
    left.set_xlabel("epoch")
    if top:
        left.legend(fontsize=7)
    epochs = [r["epoch"] for r in final_history]
    right.plot(epochs, [r["train_loss"] for r in final_history], label="train loss")
    right.plot(epochs, [r["train_accuracy"] for r in final_history], label="train accuracy")
    right.set_title("final model (train + validation)")
    right.set_xlabel("epoch")
    right.legend(fontsize=7)
    return _png(fig)


def plot_confusion(matrix: Sequence[Sequence[int]], class_names: Sequence[str]) -> bytes:
    """The test confusion matrix, rows true and columns predicted."""
    plt = _figure()
    values = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    ax.imshow(values, cmap="Blues")
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (i, j), v in np.ndenumerate(values):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > values.max() / 2 else "black")
    return _png(fig)
