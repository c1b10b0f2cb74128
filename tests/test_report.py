"""The report (:mod:`search.report`): built from the stages' records, written whole and read back,
rendered for people; TensorBoard's final run."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import tensorboard_events
from search.records import Confirmation, FinalModel, Finished, Member, Report, TrialRecord
from search.settings import RunSettings
from search.tuning.space import seed_point


@pytest.fixture(scope="module")
def report() -> Report:
    """A run's report as :func:`search.report.build.build_report` makes it: two trials, the best kept
    in the final model, the other's retrain dropped."""
    from fer_core.data import load
    from fer_core.evaluate import evaluate_predictions
    from fer_core.splits import make_splits
    from search.report.build import build_report

    data = load("synthetic:60")
    splits = make_splits(data, "subject")
    labels = splits.test.labels
    test = evaluate_predictions(labels, np.where(np.arange(len(labels)) % 4 == 0, 0, labels), data.class_names)
    history = ({"epoch": 1, "val_accuracy": 0.8, "val_loss": 0.6, "train_seconds": 1.5},
               {"epoch": 2, "val_accuracy": 0.9, "val_loss": 0.3, "train_seconds": 2.5})
    config = {**seed_point(), "epochs": 2, "normalize": "standardize"}
    kept = TrialRecord("kept1", "completed", config, final_metric=0.9, best_metric=0.9, epochs=2, history=history)
    gone = TrialRecord("gone2", "completed", {**config, "dense_units": 256}, final_metric=0.8, best_metric=0.9,
                       epochs=2, history=history)
    member = Member(kept, kept.train_config, {"metrics": {"accuracy": 0.75, "macro_f1": 0.73},
                                              "history": [{"epoch": 1, "train_loss": 0.9, "train_accuracy": 0.6}]})
    dropped = {"trial_id": "gone2", "normalize": "standardize", "reason": "diverged (loss became nan)",
               "seeds": [42, 1042]}
    final = FinalModel(None, (member,), (dropped,), {"metrics": test})
    confirmation = Confirmation(3, 0, (kept, gone), {}, 0.0, "--confirm 0")
    finished = Finished(confirmation, final, (kept, gone), test, {"retrain_s": 3.0})
    return build_report("r", RunSettings(), data, splits, [kept, gone], finished, 12.0, {"run_s": 20.0})


def test_report_names_a_dropped_member_and_why(report: Report) -> None:
    from search.report.markdown import render_markdown

    assert [m["trial_id"] for m in report.ensemble] == ["kept1"] and report.best_trial_id == "kept1"
    markdown = render_markdown(report, {})
    assert "averages the class probabilities of 1 networks: the best trials' configs" in markdown
    assert "| kept1 | standardize | 0.9000 | 75.0% | 0.730 |" in markdown
    assert "Trial gone2 left the final model: its retrain diverged (loss became nan), at seeds 42, 1042." in markdown
    assert "were not cross-validated (--confirm 0)" in markdown
    assert "left the final model" not in render_markdown(dataclasses.replace(report, ensemble_dropped=[]), {})


def test_the_report_is_written_whole_and_reads_back(report: Report, tmp_path: Path) -> None:
    """``report.json`` is :meth:`Report.to_json` and reads back as the same report; ``report.md``
    and the plots beside it; the summary the command prints says where they are."""
    from search.report.build import write_report
    from search.report.markdown import summary_text

    paths = write_report(tmp_path, report, [{"epoch": 1, "train_loss": 0.9, "train_accuracy": 0.6}])
    assert Report.from_json(json.loads((tmp_path / "report.json").read_text())) == report
    assert paths["report.md"].read_text().startswith("# FER Tune report: r")
    for png in ("confusion_matrix", "search_history", "learning_curves"):
        assert paths[png].stat().st_size > 1000 and paths[png].parent == tmp_path / "plots"
    summary = summary_text(report, tmp_path)
    assert "2 trials completed, 0 failed, search 12 s, split subject" in summary
    assert f"report: {tmp_path / 'report.md'}" in summary


def test_rewriting_the_final_run_replaces_its_curves(tmp_path: Path) -> None:
    """A final model rebuilt by --resume writes TensorBoard's final run again: one event file, each epoch once."""
    import tensorflow as tf

    from search.report.final_run import write_final_run
    from search.report.plots import plot_confusion

    figure = plot_confusion([[2, 0], [1, 1]], ["a", "b"])
    for losses in ([0.9, 0.5, 0.3], [0.8, 0.4, 0.2]):
        history = [{"epoch": i + 1, "train_loss": v} for i, v in enumerate(losses)]
        write_final_run(tmp_path / "final", history, ["a", "b"], figure)
    assert len(list((tmp_path / "final").glob("events.out.tfevents.*"))) == 1
    events = tensorboard_events(tmp_path / "final")
    losses = [float(tf.make_ndarray(e.tensor_proto)) for e in events.Tensors("final/train_loss")]
    assert losses == pytest.approx([0.8, 0.4, 0.2])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]
