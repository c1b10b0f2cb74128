"""The papers' protocol (``--folds``): outer folds that test every face once, by subject where there are
subjects; a K-fold run that pools them, resumed at the fold it stopped in."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, search_run
from fer_core.data import load
from fer_core.errors import DataError
from fer_core.evaluate import evaluate_confusion, evaluate_predictions
from fer_core.splits import outer_folds


def test_every_face_is_tested_once_and_no_person_on_both_sides() -> None:
    data = load("synthetic:300")
    folds = outer_folds(data, 3)
    tested = np.concatenate([f.test.groups for f in folds])
    assert len(folds) == 3 and sum(len(f.test) for f in folds) == len(data) == len(tested)
    for f in folds:
        assert f.method == "subject" and len(f.train) + len(f.val) + len(f.test) == len(data)
        held = set(f.test.groups.tolist())
        assert not held & set(f.train.groups.tolist()) and not held & set(f.val.groups.tolist())
        assert not set(f.val.groups.tolist()) & set(f.train.groups.tolist())
    # the faces themselves: each exactly once over the folds
    seen = np.concatenate([f.test.images.reshape(len(f.test), -1) for f in folds])
    assert len(np.unique(seen, axis=0)) == len(data)


def test_loso_has_a_fold_per_subject_and_without_subjects_the_folds_are_by_image() -> None:
    data = load("synthetic:120")
    subjects = len(np.unique(data.groups))
    folds = outer_folds(data, "loso")
    assert len(folds) == subjects and all(len(set(f.test.groups.tolist())) == 1 for f in folds)
    anonymous = type(data)(images=data.images, labels=data.labels, class_names=data.class_names, source="anon")
    by_image = outer_folds(anonymous, 4)
    assert {f.method for f in by_image} == {"random"} and sum(len(f.test) for f in by_image) == len(data)
    with pytest.raises(DataError, match="folds 'loso': anon has no subject ids"):
        outer_folds(anonymous, "loso")
    with pytest.raises(DataError, match=f"has {subjects} subject"):
        outer_folds(data, subjects + 1)


def test_pooled_figures_are_those_of_all_the_faces_together() -> None:
    rng = np.random.default_rng(0)
    names = ["a", "b", "c"]
    parts = [(rng.integers(0, 3, n), rng.integers(0, 3, n)) for n in (40, 35, 25)]
    matrix = np.sum([evaluate_predictions(t, p, names)["confusion_matrix"] for t, p in parts], axis=0)
    pooled = evaluate_confusion(matrix, names)
    together = evaluate_predictions(np.concatenate([t for t, _ in parts]), np.concatenate([p for _, p in parts]), names)
    assert pooled["n"] == 100 and pooled["confusion_matrix"] == together["confusion_matrix"]
    for key in ("accuracy", "macro_f1", "balanced_accuracy", "majority_accuracy"):
        assert pooled[key] == pytest.approx(together[key]), key


@pytest.mark.slow
def test_three_folds_pool_every_face_and_a_run_killed_mid_fold_resumes_there(tmp_path: Path) -> None:
    # one trial per fold: what is asserted is the folds' pooling and resume, for which each fold's
    # search needs a result, not a choice between trials
    args = ["--data", "synthetic:300", "--folds", "3", "--trials", "1", "--max-epochs", "2", "--confirm", "0",
            "--ensemble", "1", "--final-epochs-scale", "1", "--time-budget", "4m", "--output", str(tmp_path),
            "--name", "f"]
    driver = subprocess.Popen([sys.executable, "-m", "search.run", *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    run = tmp_path / "f"
    deadline = time.time() + 600
    try:
        while time.time() < deadline and driver.poll() is None and not (run / "fold-1" / "tune").exists():
            time.sleep(1)
        assert driver.poll() is None, "the run ended before its second fold"
        time.sleep(3)
        os.kill(driver.pid, signal.SIGKILL)  # in the second fold's search
        driver.wait(timeout=60)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    first = (run / "fold-0" / "fold.json").read_text()
    assert not (run / "fold-1" / "fold.json").exists() and not (run / "report.json").exists()

    result = search_run("--output", str(tmp_path), "--name", "f", "--resume")
    assert result.returncode == 0, result.stderr[-4000:]
    assert (run / "fold-0" / "fold.json").read_text() == first  # the finished fold was not run again
    report = json.loads((run / "report.json").read_text())
    assert report["n_test"] == report["test"]["n"] == 300 and report["protocol"].startswith("3-fold subject")
    assert [f["fold"] for f in report["folds"]] == [0, 1, 2] and sum(f["n_test"] for f in report["folds"]) == 300
    pooled = np.sum([f["test"]["confusion_matrix"] for f in report["folds"]], axis=0)
    assert report["test"]["confusion_matrix"] == pooled.tolist()
    assert report["test_accuracy"] == pytest.approx(np.trace(pooled) / 300)
    assert report["seed_recipe_test"]["n"] == 300 and report["exported"] is None
    assert not any((run / f"fold-{k}" / "best").exists() for k in range(3))
    assert "3 folds, 300 faces each tested once" in result.stdout
    assert "| 1 | " in (run / "report.md").read_text()
