"""The command line (:mod:`search.cli`): bad flags refused in one line before anything starts, the
README's flag table, the flags a resumed run takes from its ``run.json``, the default budget."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, random_pixels, search_run, write_csv


@pytest.fixture
def no_subjects_csv(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    return write_csv(tmp_path / "plain.csv", [(i % 2, random_pixels(rng)) for i in range(20)], header="emotion,pixels")


@pytest.mark.parametrize("flags, expected", [
    (["--trials", "0"], "--trials 0: expected an integer >= 1"),
    (["--max-epochs", "0"], "--max-epochs 0: expected an integer >= 1"),
    (["--split", "diagonal"], "--split 'diagonal': expected one of"),
    (["--metric", "loss"], "--metric 'loss'"),
    (["--time-budget", "soon"], "--time-budget 'soon': expected a positive duration like 90s, 30m or 2h, or none"),
    (["--time-budget", "0m"], "--time-budget '0m'"),
    (["--cpus-per-trial", "0"], "--cpus-per-trial 0"),
    (["--ensemble", "0"], "--ensemble 0: expected an integer >= 1"),
    (["--final-epochs-scale", "0"], "--final-epochs-scale 0.0: expected a number > 0"),
    (["--final-epochs-scale", "nan"], "--final-epochs-scale nan"),
    (["--final-mixup", "-0.2"], "--final-mixup -0.2: expected a number in [0, 10]"),
    (["--final-mixup", "nan"], "--final-mixup nan"),
    (["--cost-weight", "-1"], "--cost-weight -1.0: expected a number in [0, 10] (0: accuracy alone)"),
    (["--cost-weight", "nan"], "--cost-weight nan"),
    (["--final-inputs", "histeq"], "--final-inputs 'histeq': expected one of none, standardize, equalize"),
    (["--final-inputs", "equalize", "equalize"], "--final-inputs equalize equalize: a normalization is named twice"),
    (["--confirm", "1"], "--confirm 1: expected 0 (no confirmation) or an integer >= 2"),
    (["--confirm", "-2"], "--confirm -2"),
    (["--confirm-folds", "1"], "--confirm-folds 1: expected an integer >= 2"),
    (["--sampler", "random"], "--sampler 'random': expected one of startup, tpe"),
    (["--scheduler", "median"], "--scheduler 'median': expected one of asha, hyperband, none"),
    (["--data", "synthetic:150", "--confirm-folds", "500"],
     "--confirm-folds 500: 500 folds: train + validation has only"),
    (["--resume"], "--resume needs --name"),
    (["--resume", "--name", "ghost"], "no run 'ghost'"),
    (["--data", "missing.csv"], "no such file or folder"),
    (["--address", "127.0.0.1:1"], "no Ray cluster answers"),
    (["--init", "missing/best"], "--init missing/best: no such file or folder"),
    (["--init", "tests"], "--init tests: expected a FER Tune run's best/ folder"),
    (["--data", "synthetic:14:x"], "expected 'synthetic', 'synthetic:N' or 'synthetic:N:SEED'"),
])
def test_bad_flags_exit_2_with_one_line_and_no_output(tmp_path: Path, flags: list[str], expected: str) -> None:
    output = tmp_path / "runs"
    result = search_run(*flags, "--output", str(output), timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr[-2000:]
    assert not output.exists()


def test_a_budget_too_short_for_one_trial_exits_2_before_ray_starts(tmp_path: Path) -> None:
    """``--time-budget 1s`` cannot hold one trial after start-up and the export: the run says so in
    one line, naming the least budget that would, before Ray starts or anything is written."""
    output = tmp_path / "runs"
    started = time.monotonic()
    result = search_run("--time-budget", "1s", "--data", "synthetic:300", "--output", str(output), timeout=120)
    elapsed = time.monotonic() - started
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-2000:]
    assert "--time-budget 1s: too short to train one trial" in lines[0] and "expected at least" in lines[0]
    least = int(re.search(r"expected at least (\d+)s", lines[0]).group(1))
    assert least > 1
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert elapsed < 10, elapsed  # loading 300 faces: a few seconds; Ray and a search would take longer
    assert not output.exists()


def test_readme_flag_table_is_the_one_the_flags_make_and_help_prints() -> None:
    """The README's table of flags is :func:`search.cli.flag_table`, and names the same flags as
    ``--help``, each with its default."""
    from search.cli import flag_table

    result = search_run("--help", timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    options = result.stdout[result.stdout.index("options:"):]
    helped = set(re.findall(r"^\s+(--[a-z-]+)", options, flags=re.M)) - {"--help"}
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Flags"):]
    section = section[:section.index("\n## ", 4)]
    table = "\n".join(line for line in section.splitlines() if line.startswith("|"))
    assert table == flag_table()
    rows = re.findall(r"^\| `(--[a-z-]+)` \| ([^|]+) \| ([^|]+) \|$", table, flags=re.M)
    assert helped and {flag for flag, _, _ in rows} == helped
    assert len(rows) == len(table.splitlines()) - 2  # every row but the header's two is a flag's
    assert all(default.strip() and meaning.strip() for _, default, meaning in rows)
    assert "search has 50% of it" in result.stdout  # the budget's shares, from their constants


def test_subject_split_without_subject_ids_exits_2(tmp_path: Path, no_subjects_csv: Path) -> None:
    result = search_run("--data", str(no_subjects_csv), "--split", "subject", "--output", str(tmp_path / "r"),
                        timeout=120)
    assert result.returncode == 2 and "needs subject ids" in result.stderr
    assert not (tmp_path / "r").exists()


def test_unwritable_output_is_refused_before_the_search(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = search_run("--output", str(blocker / "runs"), timeout=120)
    assert result.returncode == 2 and "not a writable folder" in result.stderr


def test_output_accepts_file_uris_and_refuses_other_schemes(tmp_path: Path) -> None:
    from search.rundir import output_path

    assert output_path(f"file://{tmp_path}/runs") == tmp_path / "runs"
    assert output_path(str(tmp_path / "runs")) == tmp_path / "runs"
    result = search_run("--output", "s3://bucket/runs", timeout=120)
    assert result.returncode == 2 and "other than file://" in result.stderr


def _saved_run(output: Path, args: dict) -> None:
    """A run folder as a run saved it: its ``run.json`` with these defining arguments."""
    from search.rundir import RUN_FILE

    (output / "old").mkdir()
    (output / "old" / RUN_FILE).write_text(json.dumps({"args": args, "fingerprint": "x"}))


def test_resume_of_a_run_from_before_confirm_keeps_it_without_confirmation(tmp_path: Path) -> None:
    from search.cli import RUN_DEFINING, parse

    defaults = parse(["--output", str(tmp_path)]).defining
    assert set(defaults) == set(RUN_DEFINING)
    _saved_run(tmp_path, {k: v for k, v in defaults.items() if k not in ("confirm", "confirm_folds")} | {"trials": 7})
    command = parse(["--name", "old", "--resume", "--output", str(tmp_path)])
    assert command.resume and command.run_dir == tmp_path / "old"
    assert command.defining["trials"] == 7 and command.defining["confirm"] == 0
    settings = command.settings
    assert settings.search.trials == 7 and settings.confirm.configs == 0 and settings.confirm.folds == 3
    assert settings.confirm.count(630) == 0
    # a new run on a small data set confirms
    assert parse(["--output", str(tmp_path)]).settings.confirm.count(630) == 6


@pytest.mark.parametrize("key, before, other", [("sampler", "startup", "tpe"), ("scheduler", "asha", "hyperband")])
def test_resume_of_a_run_from_before_a_search_flag_keeps_what_it_ran(tmp_path: Path, key: str, before: str,
                                                                    other: str) -> None:
    """A run.json from before --sampler (--scheduler) resumes with the random start (the recent-trials ASHA)."""
    from search.cli import parse

    defaults = parse(["--output", str(tmp_path)]).defining
    _saved_run(tmp_path, {k: v for k, v in defaults.items() if k != key})
    # the flag on the command line of a resume does not override the run's own
    command = parse(["--name", "old", "--resume", "--output", str(tmp_path), f"--{key}", other])
    assert getattr(command.settings.search, key) == before and command.defining[key] == before
    (tmp_path / "old" / "run.json").write_text(json.dumps({"args": {**defaults, key: other}}))
    command = parse(["--name", "old", "--resume", "--output", str(tmp_path)])
    assert getattr(command.settings.search, key) == other


@pytest.mark.parametrize("flags, n_train, budget_s", [
    ([], 630, 27 * 60), ([], 16383, 27 * 60), ([], 16384, None), ([], 28709, None),
    (["--time-budget", "none"], 630, None), (["--time-budget", "None"], 28709, None),
    (["--time-budget", "2h"], 630, 7200), (["--time-budget", "2h"], 28709, 7200),
])
def test_a_small_data_set_is_bounded_by_default_a_large_one_only_when_asked(tmp_path: Path, flags: list[str],
                                                                            n_train: int, budget_s) -> None:
    """Without ``--time-budget`` a run below 16,384 training faces has 27 minutes, a larger one no
    bound; ``--time-budget none`` lifts the bound, a duration given holds whatever the size."""
    from search.cli import parse

    command = parse(["--data", "synthetic:300", *flags, "--output", str(tmp_path)])
    assert command.settings.budget_for(n_train) == budget_s
    assert command.settings.sized_for(n_train).time_budget_s == budget_s
    assert command.budget_given == bool(flags)
    # the built-in faces' first look
    assert parse(["--output", str(tmp_path)]).settings.budget_for(n_train) == 8 * 60


@pytest.mark.parametrize("text, seconds", [("90s", 90.0), ("30m", 1800.0), ("2h", 7200.0), ("45", 45.0),
                                           ("1.5m", 90.0), (None, None)])
def test_durations_read_as_seconds(text, seconds) -> None:
    from search.cli import parse_duration, time_budget_of

    assert parse_duration(text) == seconds
    assert time_budget_of(text) == seconds
    assert time_budget_of("none") is None and time_budget_of(" NONE ") is None
