"""``--points`` (:mod:`search.tuning.points`): configs tried first, checked against the search space."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import search_run


@pytest.mark.parametrize("content, expected", [
    ('[{"learning_rat": 0.1}]', "point 1: unknown parameter(s) learning_rat"),
    ('{"schedule": "sometimes"}', "point 1: config field schedule='sometimes'"),
    ('[{}, {"batch_size": 128}]', "point 2: batch_size=128 is not among the search space's choices 16, 32, 64"),
    ("[1, 2]", "expected a JSON object or a list of objects"),
    ("{oops", "not JSON"),
])
def test_bad_points_file_exits_2(tmp_path: Path, content: str, expected: str) -> None:
    points = tmp_path / "points.json"
    points.write_text(content)
    result = search_run("--points", str(points), "--output", str(tmp_path / "runs"), timeout=120)
    assert result.returncode == 2 and expected in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "runs").exists()


def test_points_say_which_values_the_space_holds_constant(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from search.tuning.points import read_points

    points = tmp_path / "points.json"
    # a report's best config names every field: the space's constants, and the fields it leaves out
    # (optimizer, mixup, seed), which a trial takes from TrainConfig's defaults
    points.write_text(json.dumps({"head": "gap", "normalize": "none", "schedule": "two_phase", "learning_rate": 3e-3,
                                  "optimizer": "sgd", "mixup": 0.2, "seed": 42}))
    with caplog.at_level("WARNING", logger="search.tuning.points"):
        [point] = read_points(str(points))
    assert point["learning_rate"] == 3e-3
    held = sorted(r.getMessage() for r in caplog.records)
    assert held == [f"--points {points}, point 1: head='gap' is held at 'flatten' by the search space",
                    f"--points {points}, point 1: mixup=0.2 is held at 0.0 by the search space",
                    f"--points {points}, point 1: normalize='none' is held at 'standardize' by the search space",
                    f"--points {points}, point 1: optimizer='sgd' is held at 'adam' by the search space"]
