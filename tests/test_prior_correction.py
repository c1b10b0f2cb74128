"""The prior-correction study: logit adjustment of the final model's decision, nested choice of tau."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT

from experiments.prior_correction import adjusted, choose_tau, nested_predictions


def test_tau_zero_is_the_plain_argmax() -> None:
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(4), size=50)
    prior = np.array([0.5, 0.3, 0.15, 0.05])
    assert np.array_equal(adjusted(probabilities, prior, 0.0), probabilities.argmax(axis=1))


def test_adjustment_moves_a_close_call_to_the_rare_class_only() -> None:
    prior = np.array([0.8, 0.2])
    close = [0.55, 0.45]  # log-odds 0.2 for the common class; tau=1 subtracts log(0.8/0.2) = 1.39
    sure = [0.95, 0.05]  # log-odds 2.94: stays
    probabilities = np.array([close, sure])
    assert adjusted(probabilities, prior, 0.0).tolist() == [0, 0]
    assert adjusted(probabilities, prior, 1.0).tolist() == [1, 0]


def test_bad_shapes_and_priors_are_refused() -> None:
    with pytest.raises(ValueError, match="expected probabilities"):
        adjusted(np.zeros((3, 4)), np.full(3, 1 / 3), 1.0)
    with pytest.raises(ValueError, match="positive prior"):
        adjusted(np.full((3, 2), 0.5), np.array([1.0, 0.0]), 1.0)


def _underconfident_in_the_rare_class(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels 80/20 where the model gives the rare class's faces 0.4 and the common class's 0.1."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.2).astype(np.int64)
    rare = np.where(labels == 1, 0.4, 0.1) + rng.normal(0, 0.02, n)
    probabilities = np.stack([1 - rare, rare], axis=1)
    prior = np.bincount(labels, minlength=2) / n
    return probabilities, labels, prior


def test_the_chosen_tau_recovers_the_rare_class_and_nested_choice_generalises() -> None:
    probabilities, labels, prior = _underconfident_in_the_rare_class(200, 0)
    assert (probabilities.argmax(axis=1) == 1).sum() == 0  # the plain argmax never predicts it
    tau = choose_tau(probabilities, labels, prior)
    assert tau > 0
    assert np.mean(adjusted(probabilities, prior, tau) == labels) == 1.0
    folds = [np.arange(i, 200, 4) for i in range(4)]
    predicted, taus = nested_predictions(probabilities, labels, prior, folds)
    assert len(taus) == 4 and all(t > 0 for t in taus)
    assert np.mean(predicted == labels) == 1.0


def test_a_balanced_problem_keeps_tau_zero() -> None:
    labels = np.array([0, 1] * 20)
    probabilities = np.where(labels[:, None] == np.arange(2), 0.7, 0.3)
    assert choose_tau(probabilities, labels, np.array([0.5, 0.5])) == 0.0  # every tau ties: the smallest


def test_a_folder_without_a_run_is_one_line_and_status_2(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "report.json").write_text(json.dumps({"data": "synthetic:60", "split": "subject"}))
    result = subprocess.run([sys.executable, "-m", "experiments.prior_correction", str(run)], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(run) in lines[0], result.stderr
