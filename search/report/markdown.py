"""The report for people: ``report.md``, and the few lines the command prints at the end, both
rendered from the run's :class:`search.records.Report`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Optional

from search.records import FoldsReport, Report
from search.rundir import BEST_DIR, TENSORBOARD_DIR


def summary_text(report: Report, run_dir: Path) -> str:
    """The few lines the command prints at the end: the final model against the seed's recipe and
    the majority class, and where to look next."""
    pct = _pct
    low, high = report.test_accuracy_ci95
    seed = (f"test accuracy {pct(report.seed_recipe_test_accuracy)}, "
            f"macro-F1 {report.seed_recipe_test_macro_f1:.3f}" if report.seed_recipe_test_accuracy is not None
            else f"not available ({report.seed_recipe_failed})")
    return "\n".join([
        (f"\nFER Tune: no search ({report.search_skipped}): the built-in prior's configs trained for the "
         f"budget, split {report.split}" if report.search_skipped else
         f"\nFER Tune: {report.trials_completed} trials completed, {report.trials_failed} failed, "
         f"search {report.search_wall_clock_s:.0f} s, split {report.split}")
        + (f", fine-tuned from {report.initialized_from['source']}" if report.initialized_from else ""),
        f"  final model   test accuracy {pct(report.test_accuracy)} (95% CI {pct(low)}-{pct(high)}), "
        f"macro-F1 {report.test_macro_f1:.3f} (ensemble of {len(report.ensemble)} networks of the best "
        f"configs on {' and '.join(report.final_inputs)} faces, mirror test-time augmentation)",
        f"  seed recipe   {seed} (the notebook reported {report.seed_baseline_accuracy:.0%}"
        + (f"; {report.seed_recipe_epochs} of its 20 epochs, to fit the time budget"
           if (report.seed_recipe_epochs or 20) != 20 else "") + ")",
        f"  majority class {pct(report.majority_accuracy)}",
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


def _metric(value: Optional[float]) -> str:
    """A validation figure; a config of the built-in prior that did not run as a trial has none."""
    return "not searched" if value is None else f"{value:.4f}"


def _pct(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def render_markdown(report: Report, plots: Mapping[str, str]) -> str:
    """The human report: comparison table, best config, trials, plots."""
    test = report.test
    seed = report.seed_recipe_test or {"accuracy": None, "macro_f1": None, "balanced_accuracy": None,
                                          "majority_accuracy": None}
    pct = _pct
    f1 = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    lines = [
        f"# FER Tune report: {report.name}",
        "",
        f"Data: `{report.data}` ({report.n_images} images, {len(test['class_names'])} classes); "
        f"split **{report.split}** ({report.n_train} train, {report.n_val} validation, "
        f"{report.n_test} test). Search metric: `{report.metric}`.",
        "",
        *_faces_lines(report.faces),
        *_init_lines(report.initialized_from),
        (f"No search: {report.search_skipped}. The time budget trained the built-in prior's configs for "
         "their members' length instead; a longer `--time-budget` searches." if report.search_skipped else
         f"Trials: {report.trials_completed} completed ({report.trials_stopped_early} stopped early by ASHA), "
         f"{report.trials_failed} failed, in {report.search_wall_clock_s:.0f} s.")
        + (f" An epoch here is a round of {report.round_images} training faces: trials are judged every "
           "round, not every pass." if report.round_images else "")
        + (f" Cost weight {report.cost_weight:g}: validation scores within {report.cost_weight:g} standard "
           "errors counted as a tie, which a config at least twice as fast won." if report.cost_weight else ""),
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
        f"The seed notebook reported {pct(report.seed_baseline_accuracy)} on CK+ with a random split."
        + (f" The seed's recipe did not finish its retrain: {report.seed_recipe_failed}."
           if report.seed_recipe_failed else "")
        + (f" The seed's recipe trained for {report.seed_recipe_epochs} of its 20 epochs here, to fit the "
           "time budget." if (report.seed_recipe_epochs or 20) != 20 else ""),
        "",
        f"The final model averages the class probabilities of {len(report.ensemble)} networks: the best "
        f"trials' configs, each retrained on train + validation{_inputs_words(report)}{_mixup_words(report)} "
        "and shown every face and its mirror image:",
        "",
        "| trial | input | validation | test accuracy alone | test macro-F1 alone |",
        "|---|---|---|---|---|",
        *[f"| {m['trial_id']} | {m.get('normalize', '')} | {_metric(m['val_metric'])} | {pct(m['test_accuracy'])} "
          f"| {m['test_macro_f1']:.3f} |" for m in report.ensemble],
        *[f"\nTrial {d['trial_id']} left the final model: its retrain {d['reason']}, at seeds "
          f"{', '.join(map(str, d['seeds']))}." for d in (report.ensemble_dropped)],
        *[_resumed_words(m) for m in report.ensemble if m.get("resumed_from_epoch")],
        "",
        *_confirmation_lines(None if report.search_skipped else report.confirmation, pct),
        "## Per class (final model)",
        "",
        "| class | precision | recall | F1 | support |",
        "|---|---|---|---|---|",
    ]
    for name, row in test["per_class"].items():
        lines.append(f"| {name} | {row['precision']:.2f} | {row['recall']:.2f} | {row['f1']:.2f} | {row['support']} |")
    lines += ["", "## Best config", "", "```json", json.dumps(report.best_config, indent=2), "```", ""]
    for title, key in (("Confusion matrix", "confusion_matrix"), ("Search history", "search_history"),
                       ("Hyperparameter importance", "importance"), ("Learning curves", "learning_curves")):
        if key in plots:
            lines += [f"## {title}", "", f"![{title}]({plots[key]})", ""]
    lines += ["## Trials", "", f"| trial | status | epochs | best {report.metric} | s an epoch | node |",
              "|---|---|---|---|---|---|"]
    for t in sorted(report.trials, key=lambda t: -(t.best_metric or -1)):
        best = "" if t.best_metric is None else f"{t.best_metric:.4f}"
        extra = f" ({t.error})" if t.error else ""
        seconds = t.epoch_seconds
        lines.append(f"| {t.trial_id} | {t.status}{extra} | {t.epochs} | {best} | "
                     f"{f'{seconds:.1f}' if seconds else ''} | {t.node_ip} |")
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


def _inputs_words(report: Report) -> str:
    """Which input normalizations the final configs trained on, in words."""
    inputs = report.final_inputs
    return f" once on each of {' and '.join(inputs)} faces" if len(inputs) > 1 else ""


def _mixup_words(report: Report) -> str:
    """How the final members trained beyond their trials' configs, in words."""
    alpha = report.final_mixup
    return f" with mixup (Beta({alpha:g}, {alpha:g}))" if alpha else ""


def _confirmation_lines(confirmation: Optional[Mapping[str, Any]], pct) -> list[str]:
    """The cross-validated re-ranking of the leading configs (search/final/confirm.py), if the run had one."""
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


def render_folds_markdown(report: FoldsReport, confusion_png: str) -> str:
    """The human report of the papers' protocol: the pooled figures beside the seed's recipe and the
    majority class, a row per fold, the pooled confusion matrix."""
    test, seed = report.test, report.seed_recipe_test
    low, high = test["accuracy_ci95"]
    lines = [f"# FER Tune report: {report.name}", "",
             f"Data: `{report.data}` ({report.n_images} images, {len(test['class_names'])} classes). Protocol: "
             f"**{report.protocol}**: each fold's faces were tested once, by a final model searched and trained on "
             f"the other folds{', which never saw their people' if report.by_subject else ''}. Search metric: "
             f"`{report.metric}`.", "", *_init_lines(report.initialized_from),
             "## Every face, pooled over the folds", "",
             "| | final models | seed recipe (same folds) |", "|---|---|---|",
             f"| accuracy | **{_pct(test['accuracy'])}** (95% CI {_pct(low)}-{_pct(high)}, {test['n']} faces) | "
             f"{_pct(seed['accuracy']) if seed else 'n/a'} |",
             f"| macro-F1 | **{test['macro_f1']:.3f}** | {_f1(seed)} |",
             f"| balanced accuracy | {_pct(test['balanced_accuracy'])} | "
             f"{_pct(seed['balanced_accuracy']) if seed else 'n/a'} |",
             f"| majority class | {_pct(test['majority_accuracy'])} | |", "",
             "The interval is a bootstrap over the faces; faces of one person are not independent, so it is "
             "somewhat narrower than one over people would be.", "",
             "## Each fold", "", "| fold | test faces | people | accuracy | macro-F1 | seed recipe | winning config |",
             "|---|---|---|---|---|---|---|"]
    for f in report.fold_records:
        config = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in f.best_config.items() if k in _SHOWN)
        lines.append(f"| {f.fold + 1} | {f.n_test} | {f.people if f.people is not None else ''} | "
                     f"{_pct(f.test['accuracy'])} | {f.test['macro_f1']:.3f} | "
                     f"{_pct(f.seed_recipe_test['accuracy']) if f.seed_recipe_test else 'n/a'} | {config} |")
    lines += ["", "## Confusion matrix (pooled)", "", f"![Confusion matrix]({confusion_png})", "",
              "No model is exported: the folds measure the recipe. Run without `--folds` for a model; its "
              "expected accuracy is the pooled figure above.", ""]
    return "\n".join(lines)


def _f1(figures: Optional[Mapping[str, Any]]) -> str:
    return f"{figures['macro_f1']:.3f}" if figures else "n/a"


_SHOWN = ("conv_blocks", "base_filters", "dense_units", "learning_rate", "batch_size", "epochs")


def folds_summary_text(report: FoldsReport, run_dir: Path) -> str:
    """The few lines the command prints at the end of a run of the papers' protocol."""
    test, seed = report.test, report.seed_recipe_test
    low, high = test["accuracy_ci95"]
    return "\n".join([
        f"\nFER Tune: {report.protocol}, {report.folds} folds, {test['n']} faces each tested once",
        f"  final models  test accuracy {_pct(test['accuracy'])} (95% CI {_pct(low)}-{_pct(high)}), "
        f"macro-F1 {test['macro_f1']:.3f}, pooled over the folds",
        "  seed recipe   " + (f"test accuracy {_pct(seed['accuracy'])}, macro-F1 {seed['macro_f1']:.3f}" if seed
                               else "not available (a fold's retrain failed)"),
        f"  majority class {_pct(test['majority_accuracy'])}",
        f"  report: {run_dir / 'report.md'}",
        f"  tensorboard --logdir {run_dir}\n"])


def _resumed_words(member: dict) -> str:
    """What a resumed run made of a final member's saved state (``resumed_from_epoch``)."""
    done, epochs = member["resumed_from_epoch"], member["epochs"]
    if done >= epochs:
        return (f"\nTrial {member['trial_id']}'s retrain had ended before the run was interrupted: its saved "
                "state was used.")
    return (f"\nTrial {member['trial_id']}'s retrain was interrupted and went on from its saved state after epoch "
            f"{done} of {epochs}.")

