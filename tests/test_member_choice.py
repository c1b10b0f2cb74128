"""The member-choice study: ensemble selection from out-of-fold predictions, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT

from experiments.member_choice import select_greedy


def _onehot(labels: np.ndarray, classes: int, confidence: float) -> np.ndarray:
    """Probabilities that put ``confidence`` on ``labels`` and spread the rest evenly."""
    p = np.full((len(labels), classes), (1 - confidence) / (classes - 1))
    p[np.arange(len(labels)), labels] = confidence
    return p


def test_two_configs_that_err_on_different_faces_are_averaged() -> None:
    # A is right on faces 0-5 and wrong (mildly) on 6-9; B the other way round, weaker.
    # Alone A scores 0.6; averaged with B, whose confidence wins its faces back, 1.0.
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    wrong = (labels + 1) % 3
    a = np.where(np.arange(10)[:, None] < 6, _onehot(labels, 3, 0.6), _onehot(wrong, 3, 0.4))
    b = np.where(np.arange(10)[:, None] < 6, _onehot(wrong, 3, 0.4), _onehot(labels, 3, 0.9))
    useless = _onehot(wrong, 3, 0.9)  # confidently wrong everywhere: never added
    weights = select_greedy(np.stack([a, b, useless]), labels, steps=10)
    assert weights.sum() == pytest.approx(1.0)
    assert weights[2] == 0 and weights[0] > 0 and weights[1] > 0
    averaged = np.tensordot(weights, np.stack([a, b, useless]), axes=1)
    assert (averaged.argmax(axis=1) == labels).mean() == 1.0


def test_a_config_that_is_best_everywhere_takes_all_the_weight() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 60)
    best = _onehot(labels, 4, 0.8)
    noisy = rng.dirichlet(np.ones(4), (3, 60))
    weights = select_greedy(np.concatenate([noisy, best[None]]), labels)
    assert weights.tolist() == [0.0, 0.0, 0.0, 1.0]


def test_ties_go_to_the_earlier_config() -> None:
    labels = np.array([0, 1, 1, 0])
    same = _onehot(labels, 2, 0.7)
    assert select_greedy(np.stack([same, same]), labels, steps=4).tolist() == [1.0, 0.0]


def test_at_most_max_members_distinct_configs_are_added() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 5, 80)
    probabilities = np.stack([_onehot(np.where(rng.random(80) < 0.7, labels, (labels + 1) % 5), 5, 0.6)
                              for _ in range(6)])  # 6 configs, each right on its own 70% of the faces
    free = select_greedy(probabilities, labels, steps=30)
    assert np.count_nonzero(free) > 2  # unbounded, the average takes in more of them
    capped = select_greedy(probabilities, labels, steps=30, max_members=2)
    assert np.count_nonzero(capped) == 2 and capped.sum() == pytest.approx(1.0)


def test_mismatched_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="expected probabilities"):
        select_greedy(np.zeros((2, 5, 3)), np.zeros(4, dtype=int))


@pytest.mark.parametrize("confirm", [None, {"folds": 3, "seed": 0, "n_rest": 10, "done": {}}])
def test_member_choice_refuses_a_run_without_a_usable_confirmation(tmp_path: Path, confirm) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "report.json").write_text(json.dumps({"data": "synthetic:60", "split": "subject",
                                                 "confirmation": {"trials": []}}))
    if confirm is not None:
        (run / "confirm.json").write_text(json.dumps(confirm))
    result = subprocess.run([sys.executable, "-m", "experiments.member_choice", str(run)], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(run) in lines[0], result.stderr
    expected = "not a finished run with a confirmation" if confirm is None else "expected 2 or more"
    assert expected in lines[0]
