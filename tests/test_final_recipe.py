"""The final-recipe study: epoch scales compared on validation, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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


@pytest.mark.slow
def test_scales_train_each_member_for_that_many_times_its_epochs(tmp_path: Path) -> None:
    def trial(trial_id: str, metric: float, **config) -> dict:
        config = {"conv_blocks": 2, "base_filters": 8, "dense_units": 16, "epochs": 2, **config}
        return {"trial_id": trial_id, "status": "completed", "final_metric": metric, "config": config,
                "history": [{"val_accuracy": metric, "val_loss": 1.0}]}

    trials = [trial("a", 0.8), trial("b", 0.9, learning_rate=3e-3), trial("c", 0.5, base_filters=4),
              {"trial_id": "d", "status": "failed", "final_metric": None, "config": {}, "history": []}]
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"data": "synthetic:300", "split": "subject", "trials": trials}))
    result = _run(str(path), "--members", "2", "--scales", "1", "1.5", "--workers", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])

    from fer_core.data import load
    from search.run import make_splits

    assert figures["n_val"] == len(make_splits(load("synthetic:300"), "subject").val)
    assert set(figures["scales"]) == {"1", "1.5"}
    for scale, epochs in (("1", 2), ("1.5", 3)):
        row = figures["scales"][scale]
        assert row["epochs"] == {"b": epochs, "a": epochs}  # the 2 best configs, not c
        assert all(0.0 <= v <= 1.0 for v in row["members"].values())
        assert row["member_mean"] == pytest.approx(sum(row["members"].values()) / 2)
        assert 0.0 <= row["ensemble_accuracy"] <= 1.0
