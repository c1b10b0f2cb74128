"""The seed-baseline command: its JSON line, and one-line errors with status 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, random_pixels, write_csv


def _run(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "experiments.seed_baseline", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_malformed_pixel_row_exits_2_with_one_line_naming_the_row(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = [(i % 3, random_pixels(rng), "Training") for i in range(8)]
    rows.insert(5, (1, "12 34 abc 56", "Training"))  # the 6th data row: line 7 of the file
    path = write_csv(tmp_path / "bad.csv", rows)
    result = _run("--data", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(path) in lines[0] and "line 7" in lines[0] and "'abc'" in lines[0]
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_subject_split_without_subjects_exits_2(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = write_csv(tmp_path / "ok.csv", [(i % 2, random_pixels(rng)) for i in range(10)], header="emotion,pixels")
    result = _run("--data", str(path), "--split", "subject")
    assert result.returncode == 2 and "needs subject ids" in result.stderr


@pytest.mark.slow
def test_seed_baseline_prints_its_figures_as_the_last_line() -> None:
    result = _run("--data", "synthetic:300", "--epochs", "2", "--split", "subject")
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    for key in ("test_accuracy", "test_macro_f1", "test_balanced_accuracy", "majority_accuracy"):
        assert 0.0 <= figures[key] <= 1.0
    assert figures["split"] == "subject" and figures["epochs"] == 2
