"""The tuner comparison: one real run of every arm, and one-line errors with status 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import ROOT

TOOLS = ("fertune", "kerastuner", "optuna", "ray_random")
SMALL = ["--data", "synthetic:120", "--split", "subject", "--budget", "15s", "--max-epochs", "1", "--seeds", "42",
         "--retrains", "2"]


FERTUNE_ARGS = "--confirm 2 --confirm-folds 2 --ensemble 2 --final-epochs-scale 1"  # the shared comparison's


def _compare(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "experiments.compare_tuners", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def _merge(capsys: pytest.CaptureFixture, *args: str) -> SimpleNamespace:
    """``compare_tuners --merge ARGS`` in this process, through the command's own ``run_cli``: a merge
    trains nothing, and a fresh interpreter's imports cost seconds a call (the command as a user runs
    it, --merge's errors included, is test_bad_arguments_exit_2_with_one_line_and_no_output's)."""
    from experiments.compare_tuners import main
    from fer_core.errors import run_cli

    capsys.readouterr()  # what the test printed before
    status = run_cli(main, ["--merge", *args], prog="compare_tuners")
    out, err = capsys.readouterr()
    return SimpleNamespace(returncode=status, stdout=out, stderr=err)


# compare_tuners with FER Tune's confirmation run whatever time the budget leaves it: its time check
# (search.final.confirm.how_many_fit, tested alone in test_confirm) counts every candidate as fitting.
# A real budget that leaves 2 configs x 2 folds their time is minutes, and how many minutes depends on the machine.
CONFIRM_WHATEVER_FITS = ("import sys; import search.final.confirm; "
                         "search.final.confirm.how_many_fit = lambda estimates, *rest: len(estimates); "
                         "from experiments.compare_tuners import main; from fer_core.errors import run_cli; "
                         "sys.exit(run_cli(main, prog='compare_tuners'))")


@pytest.mark.parametrize("flags, expected", [
    (["--data", "synthetic:150", "--budget", "15s", "--tools", "fertune,hyperopt"], "unknown tool(s) hyperopt"),
    (["--data", "synthetic:150", "--budget", "soon"], "--budget 'soon'"),
    (["--data", "synthetic:150", "--budget", "15s", "--max-epochs", "0"], "--max-epochs 0"),
    (["--data", "synthetic:150", "--budget", "15s", "--retrains", "0"], "--retrains 0: expected an integer >= 1"),
    (["--data", "synthetic:150", "--budget", "15s", "--train-faces", "0"], "--train-faces 0: expected an integer >= 1"),
    (["--data", "synthetic:150", "--budget", "15s", "--train-faces", "5000"],
     "--train-faces 5000: expected fewer than the"),
    (["--data", "missing.csv", "--budget", "15s"], "no such file or folder"),
    (["--data", "synthetic:150", "--budget", "15s", "--seeds", "x"], "--seeds: invalid int value"),
    (["--budget", "15s"], "--data is required"),
    (["--merge", "missing/compare.json"], "--merge missing/compare.json: no such file"),
    (["--data", "synthetic:150", "--merge", "a.json"], "--data cannot go with it"),
    (["--data", "synthetic:150", "--budget", "15s", "--fertune-args=--seed 3"], "--seed is set by the harness"),
    (["--data", "synthetic:150", "--budget", "15s", "--fertune-args=--seed=3 --data x"],
     "--seed, --data are set by the harness"),
    (["--data", "synthetic:150", "--budget", "15s", "--tools", "optuna", "--fertune-args=--confirm 0"],
     "no fertune arm in --tools 'optuna'"),
    (["--data", "synthetic:150", "--budget", "15s", "--fertune-args=--confirm 0 --bogus 1"],
     "--fertune-args '--confirm 0 --bogus 1': unrecognized arguments: --bogus 1"),
    (["--data", "synthetic:150", "--budget", "15s", "--fertune-args=--cpus-per-trial 0"],
     "--cpus-per-trial 0.0: expected a number > 0"),
    (["--data", "synthetic:150", "--budget", "15s", "--fertune-args=--confirm '0"], "No closing quotation"),
])
def test_bad_arguments_exit_2_with_one_line_and_no_output(tmp_path: Path, flags: list[str], expected: str) -> None:
    output = tmp_path / "compare"
    result = _compare(*flags, "--output", str(output), timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr[-2000:]
    assert result.stdout == "" and not output.exists()


@pytest.fixture(scope="module")
def comparison(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """One comparison of every tool, FER Tune's confirmation run whatever the budget, with
    --final-models of 2 members at their trials' epochs: shared by the tests of the table, of FER
    Tune's winner and of the final models, since each run of the harness starts Ray and trains
    every arm's winners and final model."""
    output = tmp_path_factory.mktemp("compare") / "compare"
    result = subprocess.run([sys.executable, "-c", CONFIRM_WHATEVER_FITS, *SMALL, "--tools", ",".join(TOOLS),
                             "--final-models", f"--fertune-args={FERTUNE_ARGS}",
                             "--output", str(output)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    return result, output


@pytest.mark.slow
def test_every_tool_searches_retrains_and_is_tabled(comparison, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    result, output = comparison
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert [(r["seed"], r["tool"]) for r in summary["rows"]] == [(42, tool) for tool in TOOLS]
    for row in summary["rows"]:
        assert row["error"] is None, row
        assert row["trials_completed"] >= 1, row
        assert 0.0 <= row["best_val_accuracy"] <= 1.0 and 0.0 <= row["test_accuracy"] <= 1.0, row
        assert 0.0 <= row["test_macro_f1"] <= 1.0, row
        assert 0.0 <= row["time_to_95_s"] <= row["search_wall_clock_s"], row
    assert [m["tool"] for m in summary["means"]] == list(TOOLS)
    # the printed table, and compare.md with the same table
    table = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + 2 * len(TOOLS)  # header, one row per tool, one mean per tool
    markdown = (output / "compare.md").read_text()
    assert all(line in markdown for line in table)
    # compare.json: the protocol, and every arm's trials with their finish times
    report = json.loads((output / "compare.json").read_text())
    assert report["split"] == "subject" and report["max_epochs"] == 1 and report["budget_s"] == 15.0
    assert report["retrains"] == 2
    for row in report["rows"]:
        assert row["trials"], row["tool"]
        for trial in row["trials"]:
            assert trial["status"] in ("completed", "stopped_early", "failed")
            if trial["status"] != "failed":
                assert 0.0 <= trial["finished_s"] <= row["search_wall_clock_s"] + 0.5, (row["tool"], trial)
        assert row["winner_config"]["epochs"] == 1 and set(row["winner_config"]) >= {"conv_blocks", "schedule"}
        # the winner trained twice, at its seed and the next; the row's test figures are the two's mean
        assert [t["n"] for t in row["tests"]] == [report["n_test"]] * 2, row["tool"]
        accuracies = [t["accuracy"] for t in row["tests"]]
        assert row["test_accuracy"] == pytest.approx(sum(accuracies) / 2)
        assert row["test_macro_f1"] == pytest.approx(sum(t["macro_f1"] for t in row["tests"]) / 2)
        assert row["test_accuracy_range"] == [min(accuracies), max(accuracies)]
    from search.tuning.space import seed_point

    for row in report["rows"]:  # the budget's cut: the best of the trials finished by then, never above the best
        within = [t["val_accuracy"] for t in row["trials"]
                  if t["status"] != "failed" and t["finished_s"] <= report["budget_s"]]
        assert row["best_val_by_budget"] == (max(within) if within else None), row["tool"]
        best = max(t["val_accuracy"] for t in row["trials"] if t["status"] != "failed")
        assert row["best_val_by_budget"] is None or row["best_val_by_budget"] <= best
        if row["tool"] != "fertune":  # FER Tune's winner is the best of its confirmation, not of validation
            assert row["best_val_accuracy"] == best
    _merge_gives_the_same_table(tmp_path, report, table, capsys)
    fertune = next(r for r in report["rows"] if r["tool"] == "fertune")
    seed = {k: v for k, v in seed_point().items() if k != "augment"}  # FER Tune tries it first, as search.run does
    assert any(all(t["config"].get(k) == v for k, v in seed.items()) for t in fertune["trials"])
    # its confirmation ran, whatever the budget (CONFIRM_WHATEVER_FITS), and is part of its wall-clock.
    # The search before it kept to the budget: past it, only the trials suggested before it finished,
    # one running a slot and the one Tune keeps pending for a searcher without a concurrency limit
    # (ray.tune's _get_max_pending_trials). Counted, not timed: on a loaded machine a Ray worker's
    # start alone takes more than the 15 s. Its winner: test_fertune_s_winner_is_its_confirmations_best
    confirmation = fertune["notes"]["confirmation"]
    assert confirmation["skipped"] is None and confirmation["seconds"] > 0
    late = [t for t in fertune["trials"] if t["status"] != "failed" and t["finished_s"] > report["budget_s"]]
    assert len(late) <= fertune["notes"]["slots"] + 1, late


@pytest.mark.slow
def test_fertune_s_winner_is_its_confirmations_best(comparison) -> None:
    """When its confirmation runs, FER Tune's winner is the best by cross-validation, which need
    not be its best by validation: its row's winner, configuration and figure are that trial's."""
    result, output = comparison
    assert result.returncode == 0, result.stderr[-4000:]
    rows = json.loads((output / "compare.json").read_text())["rows"]
    assert [r["tool"] for r in rows] == list(TOOLS)
    row = rows[0]
    assert row["error"] is None, row
    confirmation = row["notes"]["confirmation"]
    assert confirmation["skipped"] is None and confirmation["folds"] == 2 and confirmation["n_scored"] > 0
    confirmed = [t for t in confirmation["trials"] if "cv_accuracy" in t]
    assert len(confirmed) == 2, confirmation  # the 2 best distinct configs, each cross-validated
    accuracies = [t["cv_accuracy"] for t in confirmed]
    assert accuracies == sorted(accuracies, reverse=True), confirmation  # ranked by the cross-validation
    winner = confirmed[0]
    assert row["winner_trial"] == winner["trial_id"] and row["best_val_accuracy"] == winner["val_metric"], row
    assert row["winner_config"] == next(t["config"] for t in row["trials"] if t["trial_id"] == winner["trial_id"])


@pytest.mark.slow
def test_fertune_args_reach_the_fertune_arm(tmp_path: Path) -> None:
    """--fertune-args reach search.run: without its confirmation FER Tune's winner is its best trial."""
    output = tmp_path / "compare"
    args = "--confirm 0 --cpus-per-trial 2 --scheduler hyperband"
    result = _compare("--data", "synthetic:120", "--split", "subject", "--budget", "12s", "--max-epochs", "1",
                      "--retrains", "1", "--tools", "fertune", f"--fertune-args={args}", "--output", str(output))
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads((output / "compare.json").read_text())
    assert report["fertune_args"] == args.split()
    assert f"FER Tune with `{args}`" in (output / "compare.md").read_text()
    (row,) = report["rows"]
    assert row["error"] is None and row["notes"]["confirmation"]["skipped"] == "--confirm 0"
    scored = [t for t in row["trials"] if t["status"] != "failed"]
    assert row["best_val_accuracy"] == max(t["val_accuracy"] for t in scored)


@pytest.mark.slow
def test_stop_at_budget_stops_every_peers_running_trials_at_the_budget(tmp_path: Path) -> None:
    """--stop-at-budget: no trial runs its 20 epochs past a 4 s budget (let finish, Optuna's
    first trial and every random-search trial would); the winners still retrain for all 20."""
    output = tmp_path / "compare"
    # 20 epochs keep every trial far from its end at 4 s: on 2 cores each arm's trials ran 1-2 epochs
    # by then (CI's run of the earlier 50); each winner's retrain of 20 takes about 8 s
    budget, epochs = 4.0, 20
    result = _compare("--data", "synthetic:120", "--split", "subject", "--budget", f"{budget:g}s",
                      "--max-epochs", str(epochs), "--retrains", "1", "--tools", "kerastuner,optuna,ray_random",
                      "--stop-at-budget", "--output", str(output))
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads((output / "compare.json").read_text())
    assert report["stop_at_budget"] is True
    assert "stopped at the end of their epoch" in (output / "compare.md").read_text()
    for row in report["rows"]:
        assert row["error"] is None, row
        assert row["trials"] and all(t["epochs"] < epochs for t in row["trials"]), (row["tool"], row["trials"])
        assert all(t["status"] == "stopped_early" for t in row["trials"]), (row["tool"], row["trials"])
        # a trial stops at its first epoch's end past the budget; a Ray worker's first epoch loads TensorFlow
        assert row["search_wall_clock_s"] < budget + 20, row["tool"]
        assert row["winner_config"]["epochs"] == epochs and row["tests"][0]["n"] == report["n_test"]


def _merge_gives_the_same_table(tmp_path: Path, report: dict, table: list[str],
                                capsys: pytest.CaptureFixture) -> None:
    """The comparison cut in two (as if one arm were re-run alone) and merged back: the same table."""
    parts = []
    for name, rows in (("a", report["rows"][:1]), ("b", report["rows"][1:])):
        part = tmp_path / name / "compare.json"
        part.parent.mkdir()
        cut = [{k: v for k, v in r.items() if k != "best_val_by_budget"} for r in rows]  # as before the column
        part.write_text(json.dumps({**report, "rows": cut}))
        parts.append(str(part))
    merged = tmp_path / "merged"
    result = _merge(capsys, *reversed(parts), "--output", str(merged))
    assert result.returncode == 0, result.stderr[-2000:]
    assert [line for line in result.stdout.splitlines() if line.startswith("| ")] == table
    assert json.loads((merged / "compare.json").read_text())["merged"] == list(reversed(parts))
    # the same arm twice, or a comparison of another protocol: one line, status 2, nothing written
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**report, "budget_s": 30.0, "rows": []}))
    stopped = tmp_path / "stopped.json"
    stopped.write_text(json.dumps({**report, "stop_at_budget": True, "rows": []}))
    older = tmp_path / "older.json"  # from before --retrains: one retrain per winner, no range column
    old_row = {k: v for k, v in report["rows"][0].items() if k != "test_accuracy_range"}
    older.write_text(json.dumps({k: v for k, v in report.items() if k != "retrains"} | {"rows": [old_row]}))
    result = _merge(capsys, str(older), "--output", str(tmp_path / "from_older"))
    assert result.returncode == 0, result.stderr[-2000:]
    accuracy = f"{100 * old_row['test_accuracy']:.1f}%"
    assert f"| {accuracy} | {accuracy[:-1]}-{accuracy} |" in result.stdout
    assert json.loads((tmp_path / "from_older" / "compare.json").read_text())["retrains"] == 1
    # FER Tune run with other options: merged with the peers alone, never with another FER Tune's rows
    options = tmp_path / "options.json"
    options.write_text(json.dumps({**report, "fertune_args": ["--confirm", "0"],
                                   "rows": [{**report["rows"][0], "seed": 43}]}))
    result = _merge(capsys, parts[1], str(options), "--output", str(tmp_path / "with_peers"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((tmp_path / "with_peers" / "compare.json").read_text())["fertune_args"] == ["--confirm", "0"]
    assert "FER Tune with `--confirm 0`" in (tmp_path / "with_peers" / "compare.md").read_text()
    for files, expected in (([parts[0], parts[0]], "seed 42, fertune is also in"),
                            ([parts[0], str(options)], "FER Tune ran with --fertune-args '--confirm 0', not "
                                                       f"'{' '.join(report['fertune_args'])}'"),
                            ([parts[0], str(other)], "budget_s is 30.0, not 15.0"),
                            ([parts[0], str(stopped)], "stop_at_budget is True, not False"),
                            ([parts[0], str(older)], "retrains is 1, not 2")):
        result = _merge(capsys, *files, "--output", str(tmp_path / "refused"))
        assert result.returncode == 2 and expected in result.stderr, result.stderr[-2000:]
        assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "refused").exists()


@pytest.mark.slow
def test_final_models_are_built_by_search_runs_final_stage_for_every_tool(comparison, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture) -> None:
    """--final-models: each arm's best configs (FER Tune's by its confirmation, a peer's by validation),
    as many as FER Tune's --ensemble and at its --final-epochs-scale (2, 1x), retrained, averaged and
    tested; tabled beside the winner."""
    result, output = comparison
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads((output / "compare.json").read_text())
    assert report["final_models"] is True
    header = next(line for line in result.stdout.splitlines() if line.startswith("| seed"))
    assert header.endswith("| final model test acc | final model macro-F1 |")
    for row in report["rows"]:
        assert row["error"] is None and row["final_error"] is None, row
        assert 0.0 <= row["final_test_accuracy"] <= 1.0 and 0.0 <= row["final_test_macro_f1"] <= 1.0
        assert row["final_test"]["n"] == report["n_test"] and row["final_test"]["accuracy"] == row["final_test_accuracy"]
        members = row["final_members"]
        scored = {t["trial_id"]: t for t in row["trials"] if t["status"] != "failed"}
        distinct = {json.dumps(t["config"], sort_keys=True) for t in scored.values()}
        assert len(members) + len(row["final_dropped"]) == min(2, len(distinct)), row["tool"]
        for member in members:  # each a trial of this arm, at once its trial's one epoch
            assert member["trial_id"] in scored and member["epochs"] == 1 and 0.0 <= member["test_accuracy"] <= 1.0
        if row["tool"] != "fertune":  # a peer's best by validation (one epoch: every trial ran to the end)
            accuracies = [m["val_accuracy"] for m in members]
            assert accuracies == sorted(accuracies, reverse=True)
            picked = {m["trial_id"] for m in members} | {d["trial_id"] for d in row["final_dropped"]}
            floor = min(scored[t]["val_accuracy"] for t in picked)
            assert all(t["val_accuracy"] <= floor for i, t in scored.items() if i not in picked)
        else:  # FER Tune: its confirmation's ranking first (cross-validated here), as search.run picks its members
            assert row["notes"]["confirmation"]["skipped"] is None
            ranked = [t["trial_id"] for t in row["notes"]["confirmation"]["trials"]]
            assert [m["trial_id"] for m in members][:len(ranked)] == ranked[:len(members)]
    markdown = (output / "compare.md").read_text()
    assert "Final model: the arm's final model as search.run builds FER Tune's" in markdown
    merged = tmp_path / "merged"  # a merge tables the final models too
    result = _merge(capsys, str(output / "compare.json"), "--output", str(merged))
    assert result.returncode == 0 and header in result.stdout, result.stderr[-2000:]


def test_fewer_train_faces_keep_the_class_shares_and_leave_validation_and_test_whole() -> None:
    from experiments.compare_tuners import fewer_train_faces
    from fer_core.splits import make_splits
    from fer_core.synthetic import make_faces

    splits = make_splits(make_faces(600, seed=0), "subject")
    fewer = fewer_train_faces(splits, 150)
    assert len(fewer.train) == 150 and fewer.val is splits.val and fewer.test is splits.test
    shares = np.bincount(splits.train.labels) / len(splits.train)
    assert np.abs(np.bincount(fewer.train.labels, minlength=len(shares)) / 150 - shares).max() < 0.02
    again = fewer_train_faces(splits, 150)  # drawn at the protocol's seed: the same faces every time
    assert np.array_equal(again.train.images, fewer.train.images)
