"""The final-recipe study: epoch scales compared on validation, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT


def _run(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "experiments.final_recipe", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_a_file_that_is_not_a_report_exits_2_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_text('{"name": "x"}')
    result = _run(str(path))
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "not a run's report.json" in lines[0]


def _trial(trial_id: str, metric: float, **config) -> dict:
    config = {"conv_blocks": 2, "base_filters": 8, "dense_units": 16, "epochs": 2, **config}
    return {"trial_id": trial_id, "status": "completed", "final_metric": metric, "config": config,
            "history": [{"val_accuracy": metric, "val_loss": 1.0}]}


def _report(tmp_path: Path) -> Path:
    trials = [_trial("a", 0.8), _trial("b", 0.9, learning_rate=3e-3), _trial("c", 0.5, base_filters=4),
              {"trial_id": "d", "status": "failed", "final_metric": None, "config": {}, "history": []}]
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"data": "synthetic:300", "split": "subject", "trials": trials}))
    return path


@pytest.mark.parametrize("flags, expected", [
    (["--variant", "flip"], "--variant 'flip': expected NAME:FIELD=VALUE"),
    (["--variant", "as-found:flip=true"], "(NAME not 'as-found' or 'pooled')"),
    (["--variant", "pooled:flip=true"], "(NAME not 'as-found' or 'pooled')"),
    (["--variant", "x:flip=true", "--variant", "x:zoom=0.1"], "the name 'x' is given twice"),
    (["--variant", "x:rotaton=10"], "--variant x: unknown config field(s) rotaton"),
    (["--variant", "x:zoom=2"], "--variant x: config field zoom=2.0: expected a number in [0.0, 1.0]"),
    (["--folds", "1"], "--folds 1: expected 2 or more"),
    (["--copies", "0"], "--copies must be >= 1"),
    (["--save", "/nonexistent/folder/out.json"], "--save /nonexistent/folder/out.json: its folder does not exist"),
])
def test_bad_variants_and_folds_exit_2_with_one_line(tmp_path: Path, flags: list[str], expected: str) -> None:
    result = _run(str(_report(tmp_path)), *flags)
    assert result.returncode == 2 and result.stdout == "", result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr[-2000:]


@pytest.mark.slow
def test_scales_train_each_member_for_that_many_times_its_epochs(tmp_path: Path) -> None:
    result = _run(str(_report(tmp_path)), "--members", "2", "--scales", "1", "1.5", "--copies", "2", "--workers", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    # each of the 2 configs, at each scale, trained once per copy (seeds 43 and 44)
    trained = sorted(line.split(" fold ")[0] for line in result.stderr.splitlines() if " fold 0: " in line)
    assert trained == sorted(f"('{t}', {s}, 'as-found', {c})" for t in "ab" for s in (1.0, 1.5) for c in (0, 1))
    assert "trained at seeds 43-44" in result.stdout and figures["copies"] == 2

    from fer_core.data import load
    from fer_core.splits import make_splits

    assert figures["folds"] == 0 and figures["n_scored"] == len(make_splits(load("synthetic:300"), "subject").val)
    assert [(r["scale"], r["variant"]) for r in figures["rows"]] == [(1.0, "as-found"), (1.5, "as-found")]
    for row, epochs in zip(figures["rows"], (2, 3)):
        assert row["epochs"] == {"b": epochs, "a": epochs}  # the 2 best configs, not c
        assert all(0.0 <= v <= 1.0 for v in row["members"].values())
        assert row["member_mean"] == pytest.approx(sum(row["members"].values()) / 2)
        assert 0.0 <= row["ensemble_accuracy"] <= 1.0 and row["ensemble_by_fold"] == [row["ensemble_accuracy"]]
        assert 0.0 <= row["one_copy_ensemble_accuracy"] <= 1.0


@pytest.mark.slow
def test_folds_score_each_variant_on_every_face_of_train_and_validation(tmp_path: Path) -> None:
    result = _run(str(_report(tmp_path)), "--members", "1", "--scales", "1", "--folds", "3",
                  "--variant", "aug:flip=true,rotation=10", "--workers", "2", "--save", str(tmp_path / "saved.json"))
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])

    from fer_core.data import load
    from fer_core.splits import make_splits

    splits = make_splits(load("synthetic:300"), "subject")
    assert figures["folds"] == 3 and figures["n_scored"] == len(splits.train) + len(splits.val)
    assert [(r["variant"], r["changes"]) for r in figures["rows"]] == [
        ("as-found", {}), ("aug", {"flip": "true", "rotation": "10"}), ("pooled", {})]
    *variants, pooled = figures["rows"]
    # --save: the saved probabilities give back every row's figures, the pooled one included
    saved = json.loads((tmp_path / "saved.json").read_text())
    labels, part = np.array(saved["labels"]), np.array(saved["part"])
    assert len(labels) == figures["n_scored"] and sorted(set(part)) == [0, 1, 2]
    networks = {n["variant"]: np.array(n["probabilities"]) for n in saved["networks"]}
    assert set(networks) == {"as-found", "aug"} and all(p.shape[0] == len(labels) and p.shape[1] > labels.max() for p in networks.values())
    for row, combined in [(variants[0], networks["as-found"]), (variants[1], networks["aug"]),
                          (pooled, networks["as-found"] + networks["aug"])]:
        by_fold = [float((combined[part == f].argmax(1) == labels[part == f]).mean()) for f in range(3)]
        assert by_fold == pytest.approx(row["ensemble_by_fold"], abs=0.02)  # 4 saved decimals may flip a near tie
    for row in variants:
        assert len(row["ensemble_by_fold"]) == 3 and all(0.0 <= a <= 1.0 for a in row["ensemble_by_fold"])
        # one member: its mean over the folds is the ensemble's
        assert row["members"]["b"] == pytest.approx(row["ensemble_accuracy"])
    # each fold's training logged once per variant
    assert sum("fold" in line for line in result.stderr.splitlines()) == 6


@pytest.mark.slow
def test_members_follow_the_confirmation_ranking_where_the_run_has_one(tmp_path: Path) -> None:
    """As search.run picks them: the cross-validated ranking first (c, though last by
    validation), then the search's own order for configs the confirmation did not score."""
    path = _report(tmp_path)
    report = json.loads(path.read_text())
    report["confirmation"] = {"skipped": None, "trials": [
        {"trial_id": "c", "val_metric": 0.5, "cv_accuracy": 0.9},
        {"trial_id": "a", "val_metric": 0.8},  # not confirmed: no cross-validated figure
    ]}
    path.write_text(json.dumps(report))
    result = _run(str(path), "--members", "2", "--scales", "1", "--workers", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    row = json.loads(result.stdout.strip().splitlines()[-1])["rows"][0]
    assert list(row["epochs"]) == ["c", "b"]


def _saved(tmp_path: Path) -> Path:
    """A --save file by hand: 2 configs x 2 variants on 4 faces in 2 parts, 2 classes."""
    def net(trial_id, variant, probabilities):
        return {"trial_id": trial_id, "scale": 3.0, "variant": variant, "copy": 0, "probabilities": probabilities}

    right, wrong, unsure_right, unsure_wrong = [0.9, 0.1], [0.1, 0.9], [0.6, 0.4], [0.4, 0.6]
    networks = [
        net("a", "as-found", [right, wrong, unsure_wrong, right]),  # 2 of 4 right
        net("b", "as-found", [right, right, wrong, wrong]),  # 2 of 4
        net("a", "eq", [[0.2, 0.8], unsure_right, right, right]),  # 3 of 4
        net("b", "eq", [unsure_wrong, wrong, [0.3, 0.7], right]),
    ]
    path = tmp_path / "saved.json"
    path.write_text(json.dumps({"labels": [0, 0, 0, 0], "part": [0, 0, 1, 1], "networks": networks}))
    return path


def test_combine_saved_scores_each_way_of_averaging_the_saved_networks(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "experiments.combine_saved", str(_saved(tmp_path))],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    table = {k: v[0] for k, v in json.loads(result.stdout.strip().splitlines()[-1])["tables"][0].items()}
    assert table["as-found top-1"] == 0.5 and table["eq top-1"] == 0.75
    # a's two networks: face 0 (0.9 + 0.2) right, face 1 (0.1 + 0.6) wrong, faces 2 and 3 right
    assert table["pooled top-1"] == 0.75
    # alternating top-2, a as found and b equalized: faces 0 and 3 right, 1 (0.1 + 0.1) and 2 (0.4 + 0.3) wrong
    assert table["alternating top-2"] == 0.5
    assert set(table) == {f"{w} top-{k}" for w in ("as-found", "eq", "pooled", "alternating") for k in (1, 2)}


def test_combine_saved_refuses_a_file_that_is_not_a_save_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"rows": []}')
    result = subprocess.run([sys.executable, "-m", "experiments.combine_saved", str(path)],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "not a file written by experiments.final_recipe --save" in lines[0]
