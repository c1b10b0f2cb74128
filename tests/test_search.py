"""The search command end to end: bad flags, a real small search, TensorBoard, resume."""

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

from conftest import ROOT, random_pixels, write_csv

SMALL_SEARCH = ["--data", "synthetic:300", "--trials", "3", "--max-epochs", "2"]


def _search(*args: str, timeout: int = 900, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "search.run", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, **kwargs)


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
    result = _search(*flags, "--output", str(output), timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr[-2000:]
    assert not output.exists()


def test_readme_flag_table_lists_every_flag_help_prints() -> None:
    """The README's table of flags and ``--help`` name the same flags, each with its default."""
    import re

    result = _search("--help", timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    options = result.stdout[result.stdout.index("options:"):]
    helped = set(re.findall(r"^\s+(--[a-z-]+)", options, flags=re.M)) - {"--help"}
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Flags"):]
    table = table[:table.index("\n## ", 4)]
    rows = re.findall(r"^\| `(--[a-z-]+)` \| ([^|]+) \| ([^|]+) \|$", table, flags=re.M)
    assert helped and {flag for flag, _, _ in rows} == helped
    assert all(default.strip() and meaning.strip() for _, default, meaning in rows)
    assert "search has 50% of it" in result.stdout  # the budget's shares, from their constants


def test_subject_split_without_subject_ids_exits_2(tmp_path: Path, no_subjects_csv: Path) -> None:
    result = _search("--data", str(no_subjects_csv), "--split", "subject", "--output", str(tmp_path / "r"), timeout=120)
    assert result.returncode == 2 and "needs subject ids" in result.stderr
    assert not (tmp_path / "r").exists()


def test_unwritable_output_is_refused_before_the_search(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = _search("--output", str(blocker / "runs"), timeout=120)
    assert result.returncode == 2 and "not a writable folder" in result.stderr


def _events(path: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(path), size_guidance={"tensors": 0, "images": 0})
    accumulator.Reload()
    return accumulator


@pytest.mark.slow
def test_small_search_end_to_end(tmp_path: Path) -> None:
    result = _search(*SMALL_SEARCH, "--final-mixup", "0.3", "--final-inputs", "standardize", "equalize",
                     "--output", str(tmp_path), "--name", "e2e")
    assert result.returncode == 0, result.stderr[-4000:]
    run = tmp_path / "e2e"
    report = json.loads((run / "report.json").read_text())
    for key in ("test_accuracy", "test_macro_f1", "test_balanced_accuracy", "majority_accuracy",
                "seed_recipe_test_accuracy"):
        assert 0.0 <= report[key] <= 1.0, key
    assert report["seed_baseline_accuracy"] == 0.70
    low, high = report["test_accuracy_ci95"]
    assert low <= report["test_accuracy"] <= high
    assert report["split"] == "subject"  # synthetic faces carry identities
    assert report["trials_completed"] + report["trials_failed"] == 3 == len(report["trials"])
    assert report["search_wall_clock_s"] > 0
    # no --time-budget on a small data set: the run is bounded by the default, planned from its start
    assert report["time_budget_s"] == 27 * 60 == report["budget_plan"]["total_s"]
    assert "time budget 1620 s, a small data set's default (--time-budget none: no bound)" in result.stderr
    for trial in report["trials"]:
        assert trial["tf_threads"] == 1  # --cpus-per-trial defaults to 1
        assert trial["node_ip"] and trial["epochs"] >= 1 and trial["status"] in ("completed", "stopped_early")
        assert set(trial["config"]) >= {"conv_blocks", "learning_rate", "schedule"}
    # the seed's recipe is the first point of the search
    from search.space import seed_point

    assert any(all(t["config"][k] == v for k, v in seed_point().items()) for t in report["trials"])
    # report.md and plots
    markdown = (run / "report.md").read_text()
    assert "seed recipe" in markdown and "macro-F1" in markdown
    # the trials' table shows each trial's cost, which --cost-weight weighs
    from search.budget import epoch_seconds

    assert all(f"| {epoch_seconds(t):.1f} |" in markdown for t in report["trials"])
    for png in ("confusion_matrix", "search_history", "learning_curves"):
        assert (run / "plots" / f"{png}.png").stat().st_size > 1000
    # exported model: all forms load and agree (the core's round trip is tested in test_train)
    card = json.loads((run / "best" / "model_card.json").read_text())
    assert card["metrics"]["test_accuracy"] == report["test_accuracy"]
    # the final model: the 3 trials' configs (all there are, fewer than the default --ensemble),
    # best first, each on standardized and on equalized faces (--final-inputs), averaged;
    # each network trains for --final-epochs-scale times the trial's 2 epochs
    assert report["final_inputs"] == ["standardize", "equalize"]
    networks = [(m["trial_id"], m["normalize"]) for m in report["ensemble"]]
    lost = [(d["trial_id"], d["normalize"]) for d in report["ensemble_dropped"]]  # a retrain that did not learn
    assert networks and sorted(networks + lost) == sorted((t["trial_id"], n) for t in report["trials"]
                                                          for n in ("standardize", "equalize"))
    assert [(m["trial_id"], m["config"]["normalize"]) for m in card["ensemble"]] == networks
    members = list(dict.fromkeys(trial_id for trial_id, _ in networks))  # best first, once each
    dropped = [d["trial_id"] for d in report["ensemble_dropped"] if d["trial_id"] not in members]
    assert "once on each of standardize and equalize faces" in markdown
    final_epochs = round(2 * report["final_epochs_scale"])
    assert final_epochs > 2 and all(m["epochs"] == final_epochs for m in report["ensemble"])
    assert all(m["config"]["epochs"] == final_epochs for m in card["ensemble"])
    # --final-mixup: the members train with mixup, which their trials did not
    assert report["final_mixup"] == 0.3 and all(t["config"].get("mixup", 0) == 0 for t in report["trials"])
    assert all(m["config"]["mixup"] == 0.3 for m in card["ensemble"])
    assert "with mixup (Beta(0.3, 0.3))" in markdown
    # the 3 configs, cross-validated (3 folds by default) over train + validation, rank the members
    confirmation = report["confirmation"]
    assert confirmation["skipped"] is None and confirmation["folds"] == 3
    assert confirmation["n_scored"] == report["n_train"] + report["n_val"]
    order = [row["trial_id"] for row in confirmation["trials"]]
    assert sorted(order) == sorted(t["trial_id"] for t in report["trials"])
    cv = [row["cv_accuracy"] for row in confirmation["trials"]]
    assert cv == sorted(cv, reverse=True) and all(len(row["fold_accuracy"]) == 3 for row in confirmation["trials"])
    assert report["best_trial_id"] == order[0] and members == [t for t in order if t not in dropped]
    _cross_validation_matches_the_saved_predictions(run, confirmation)
    assert "## Confirmation by cross-validation" in markdown
    from fer_core.data import load
    from fer_core.export import load_predictors

    images = load("synthetic:40").images
    predictors = load_predictors(run / "best")
    predictions = {form: p(images).argmax(axis=1) for form, p in predictors.items()}
    assert (predictions["keras"] == predictions["tflite"]).all() and (predictions["keras"] == predictions["saved_model"]).all()
    # mirror test-time augmentation is inside the model: a face and its mirror image score the same
    np.testing.assert_allclose(predictors["keras"](images[:, :, ::-1, :]), predictors["keras"](images), atol=1e-5)
    # TensorBoard: per-trial scalars and hparams, the experiment's hparams config, the final run
    tb = run / "tensorboard"
    trial_dirs = sorted(p for p in tb.iterdir() if p.name.startswith("trial_"))
    assert len(trial_dirs) == 3
    for trial_dir in trial_dirs:
        events = _events(trial_dir)
        assert {"val_accuracy", "val_macro_f1", "train_loss"} <= set(events.Tags()["tensors"])
        assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams")
        steps = [e.step for e in events.Tensors("val_accuracy")]
        assert steps == list(range(1, len(steps) + 1))
    assert "_hparams_/experiment" in _events(tb).PluginTagToContent("hparams")
    final = _events(tb / "final")
    assert "final/confusion_matrix" in final.Tags()["tensors"] and "final/train_loss" in final.Tags()["tensors"]
    assert len(final.Tensors("final/train_loss")) == final_epochs


@pytest.mark.slow
def test_a_search_in_rounds_reports_and_retrains_in_rounds(tmp_path: Path) -> None:
    """``--round-images`` (a large data set's default, here forced on a small one): every trial's
    epoch is that many faces, its budget ``--max-epochs`` passes of them, the final member trains
    its trial's rounds times the scale, and a resume keeps the rounds. ``--cost-weight`` runs
    through the same search: the member is the one its rule picks, and the report says so."""
    from search.ranking import pick_ensemble

    result = _search("--data", "synthetic:300", "--trials", "2", "--max-epochs", "2", "--round-images", "64",
                     "--confirm", "0", "--ensemble", "1", "--final-inputs", "standardize", "--scheduler", "none",
                     "--cost-weight", "3", "--time-budget", "none", "--output", str(tmp_path), "--name", "r")
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["time_budget_s"] is None and report["budget_plan"] is None  # --time-budget none: no bound
    assert "the final stage will take about" in result.stderr
    rounds = -(-2 * report["n_train"] // 64)
    assert report["round_images"] == 64 and rounds > 2
    assert [(t["epochs"], t["status"], t["config"]["round_images"]) for t in report["trials"]] == \
        [(rounds, "completed", 64)] * 2
    assert report["ensemble"][0]["epochs"] == round(rounds * report["final_epochs_scale"])
    assert "a round of 64 training faces" in (tmp_path / "r" / "report.md").read_text()
    assert json.loads((tmp_path / "r" / "run.json").read_text())["args"]["round_images"] == 64
    assert report["cost_weight"] == 3 and "within 3 standard errors" in (tmp_path / "r" / "report.md").read_text()
    assert report["best_trial_id"] == pick_ensemble(report["trials"], 1, cost_weight=3, faces=report["n_val"])[0][
        "trial_id"]
    assert json.loads((tmp_path / "r" / "run.json").read_text())["args"]["cost_weight"] == 3


def _cross_validation_matches_the_saved_predictions(run: Path, confirmation: dict) -> None:
    """confirm.json's out-of-fold predictions, put back on the faces they scored, give the report's figures."""
    from fer_core.data import load
    from search.confirm import folds_of
    from fer_core.splits import make_splits

    splits = make_splits(load("synthetic:300"), "subject")
    rest = splits.train.concat(splits.val)
    saved = json.loads((run / "confirm.json").read_text())
    assert saved["folds"] == 3 and len(saved["done"]) == 3 * len(confirmation["trials"])
    parts = folds_of(rest, 3, 0)
    for row in confirmation["trials"]:
        predicted = np.full(len(rest), -1)
        for fold, (_, scored) in enumerate(parts):
            entry = saved["done"][f"{row['trial_id']}/{fold}"]
            predicted[scored] = entry["predictions"]
        assert (predicted >= 0).all()
        assert row["cv_accuracy"] == pytest.approx(float((predicted == rest.labels).mean()))
        assert row["fold_accuracy"] == pytest.approx([float((predicted[s] == rest.labels[s]).mean()) for _, s in parts])


def _finished_trials(tune_dir: Path) -> dict[str, int]:
    """Trial id -> result lines, for the trials Tune's saved state marks as finished."""
    finished = {}
    for state_file in tune_dir.glob("experiment_state-*.json"):
        try:
            state = json.loads(state_file.read_text())
        except (json.JSONDecodeError, OSError):
            continue  # being rewritten right now
        for trial_json, runtime_json in state["trial_data"]:
            trial = json.loads(trial_json)
            if trial.get("status") == "TERMINATED":
                results = tune_dir / f"trial_{trial['trial_id']}" / "result.json"
                finished[trial["trial_id"]] = len(results.read_text().splitlines())
    return finished


@pytest.mark.slow
def test_killed_driver_resumes_without_rerunning_finished_trials(tmp_path: Path) -> None:
    args = ["--data", "synthetic:300", "--trials", "5", "--max-epochs", "3", "--output", str(tmp_path), "--name", "k"]
    driver = subprocess.Popen([sys.executable, "-m", "search.run", *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    tune_dir = tmp_path / "k" / "tune"
    deadline = time.time() + 600
    try:
        while time.time() < deadline and driver.poll() is None and len(_finished_trials(tune_dir)) < 2:
            time.sleep(1)
        assert driver.poll() is None, "the search ended before it could be interrupted"
        before = _finished_trials(tune_dir)
        assert len(before) >= 2
        os.kill(driver.pid, signal.SIGKILL)  # no chance to save anything more
        driver.wait(timeout=60)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    assert not (tmp_path / "k" / "report.json").exists()

    result = _search("--output", str(tmp_path), "--name", "k", "--resume")
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads((tmp_path / "k" / "report.json").read_text())
    assert len(report["trials"]) == 5
    assert report["trials_completed"] + report["trials_failed"] == 5
    after = _finished_trials(tune_dir)
    for trial_id, lines in before.items():
        assert after.get(trial_id) == lines, f"finished trial {trial_id} was run again"
    # the trials finished before the kill keep their results: they can still be picked as the best
    records = {t["trial_id"]: t for t in report["trials"]}
    for trial_id in before:
        record = records[trial_id]
        last = json.loads((tune_dir / f"trial_{trial_id}" / "result.json").read_text().splitlines()[-1])
        assert len(record["history"]) == record["epochs"] >= 1, record
        assert record["final_metric"] == last["val_accuracy"], record
    # 5 trials, fewer than --confirm's 6: every trial that scored is a candidate (their configs differ),
    # those finished before the kill among them; the confirmation lists all candidates, confirmed or not
    confirmed = [row["trial_id"] for row in report["confirmation"]["trials"]]
    scored = [t["trial_id"] for t in report["trials"]
              if t["status"] in ("completed", "stopped_early") and t["final_metric"] is not None]
    assert set(before) <= set(confirmed), (sorted(before), confirmed)
    assert sorted(confirmed) == sorted(scored) and len(confirmed) == report["trials_completed"], (confirmed, scored)
    assert report["best_trial_id"] == confirmed[0]
    assert report["best_val_metric"] == records[confirmed[0]]["final_metric"]


@pytest.mark.slow
def test_a_trial_that_raises_is_recorded_as_failed_and_the_search_completes(tmp_path: Path) -> None:
    points = tmp_path / "points.json"
    points.write_text(json.dumps([{"learning_rate": 1e4}]))  # Adam at this rate drives the loss to NaN
    result = _search(*SMALL_SEARCH, "--points", str(points), "--output", str(tmp_path), "--name", "f")
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads((tmp_path / "f" / "report.json").read_text())
    failed = [t for t in report["trials"] if t["status"] == "failed"]
    assert len(report["trials"]) == 3 and report["trials_failed"] == 1 == len(failed)
    assert failed[0]["config"]["learning_rate"] == 1e4
    assert "TrainingDiverged" in failed[0]["error"] and "nan" in failed[0]["error"]
    assert report["best_config"]["learning_rate"] != 1e4
    assert "TrainingDiverged" in (tmp_path / "f" / "report.md").read_text()


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
    result = _search("--points", str(points), "--output", str(tmp_path / "runs"), timeout=120)
    assert result.returncode == 2 and expected in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "runs").exists()


def test_points_say_which_values_the_space_holds_constant(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from search.points import read_points

    points = tmp_path / "points.json"
    # a report's best config names every field: the space's constants, and the fields it leaves out
    # (optimizer, mixup, seed), which a trial takes from TrainConfig's defaults
    points.write_text(json.dumps({"head": "gap", "normalize": "none", "schedule": "two_phase", "learning_rate": 3e-3,
                                  "optimizer": "sgd", "mixup": 0.2, "seed": 42}))
    with caplog.at_level("WARNING", logger="search.points"):
        [point] = read_points(str(points))
    assert point["learning_rate"] == 3e-3
    held = sorted(r.getMessage() for r in caplog.records)
    assert held == [f"--points {points}, point 1: head='gap' is held at 'flatten' by the search space",
                    f"--points {points}, point 1: mixup=0.2 is held at 0.0 by the search space",
                    f"--points {points}, point 1: normalize='none' is held at 'standardize' by the search space",
                    f"--points {points}, point 1: optimizer='sgd' is held at 'adam' by the search space"]


@pytest.mark.slow
def test_time_budget_bounds_the_whole_run_and_survives_a_resume_after_its_deadline(tmp_path: Path) -> None:
    """A budgeted run interrupted mid-search and resumed after its search's deadline finishes with
    a report (and does not ask for another resume); each attempt keeps to the budget's plan."""
    args = ["--data", "synthetic:300", "--trials", "50", "--max-epochs", "2", "--time-budget", "90s",
            "--output", str(tmp_path), "--name", "b"]
    driver = subprocess.Popen([sys.executable, "-m", "search.run", *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    tune_dir = tmp_path / "b" / "tune"
    deadline = time.time() + 300
    while time.time() < deadline and driver.poll() is None and len(_finished_trials(tune_dir)) < 1:
        time.sleep(0.5)
    assert driver.poll() is None, "the search ended before it could be interrupted"
    driver.send_signal(signal.SIGINT)
    _, stderr = driver.communicate(timeout=300)
    assert driver.returncode == 130 and stderr.count("--resume") == 1, stderr[-3000:]
    plan = json.loads((tmp_path / "b" / "run.json").read_text())["plan"]
    assert plan["total_s"] == 90 and plan["search_s"] + plan["confirm_s"] + plan["final_s"] <= 90 - plan["startup_s"]
    time.sleep(max(0.0, plan["search_s"] - _spent(tmp_path / "b")) + 1)  # the search's share is over by now

    result = _search("--output", str(tmp_path), "--name", "b", "--resume")
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert report["budget_plan"] == plan and 1 <= len(report["trials"]) < 50
    assert all(t["status"] in ("completed", "stopped_early") for t in report["trials"])
    # the resumed attempt found its search share spent, so it went on to the final model at once
    assert report["timings"]["search_s"] < 30
    assert report["timings"]["run_s"] <= 1.1 * 90


def test_a_restored_trial_s_history_has_each_epoch_once(tmp_path: Path) -> None:
    """A trial restored from its epoch-2 checkpoint after its node was lost at epoch 4 reports
    epochs 3 and 4 again; the record keeps the attempt that went on, and scores from it."""
    from types import SimpleNamespace

    from search.report import trial_record

    lost = [{"epoch": e, "val_accuracy": 0.9, "node_id": "a"} for e in (1, 2, 3, 4)]
    restored = [{"epoch": e, "val_accuracy": 0.5 + e / 100, "node_id": "b", "restored_from_epoch": 2}
                for e in (3, 4, 5, 6)]
    (tmp_path / "result.json").write_text("\n".join(json.dumps(row) for row in lost + restored))
    trial = SimpleNamespace(trial_id="t", status="TERMINATED", config={}, local_path=str(tmp_path), path=None,
                            last_result={"training_iteration": 6, "node_id": "b"})
    record = trial_record(trial, "val_accuracy", max_epochs=6)
    assert [(row["epoch"], row["node_id"]) for row in record["history"]] == \
        [(1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "b"), (6, "b")]
    assert record["final_metric"] == 0.56 and record["best_metric"] == 0.9  # epochs 1-2 stand
    assert record["status"] == "completed"


def _spent(run: Path) -> float:
    return json.loads((run / "run.json").read_text())["search_seconds"]


def test_output_accepts_file_uris_and_refuses_other_schemes(tmp_path: Path) -> None:
    from search.rundir import output_path

    assert output_path(f"file://{tmp_path}/runs") == tmp_path / "runs"
    assert output_path(str(tmp_path / "runs")) == tmp_path / "runs"
    result = _search("--output", "s3://bucket/runs", timeout=120)
    assert result.returncode == 2 and "other than file://" in result.stderr


def _trial(trial_id: str, metric: float, val_loss: float, status: str = "completed", **config) -> dict:
    return {"trial_id": trial_id, "status": status, "final_metric": metric, "config": {"lr": trial_id, **config},
            "history": [{"val_accuracy": metric, "val_loss": val_loss}]}


def test_pick_ensemble_breaks_ties_by_validation_loss_whatever_the_order() -> None:
    from search.ranking import pick_ensemble

    trials = [_trial("a", 0.90, 0.50), _trial("b", 0.94, 0.40), _trial("c", 0.94, 0.20),
              _trial("d", 0.96, 0.90, status="stopped_early"), _trial("e", 0.92, float("nan")),
              _trial("f", 0.92, 0.30), _trial("g", 0.94, 0.10, lr="c"), _trial("x", None, 0.1, status="failed")]
    expected = ["g", "b", "f", "e"]  # c repeats g's config; completed trials before a stopped one
    for order in (trials, trials[::-1], trials[3:] + trials[:3]):
        assert [t["trial_id"] for t in pick_ensemble(order, 4)] == expected
    assert [t["trial_id"] for t in pick_ensemble(trials, 10)] == ["g", "b", "f", "e", "a", "d"]


def test_pick_members_takes_the_confirmed_order_then_the_search_s() -> None:
    from search.ranking import pick_members

    trials = [_trial("a", 0.96, 0.1), _trial("b", 0.94, 0.2), _trial("c", 0.92, 0.3), _trial("d", 0.90, 0.4),
              _trial("e", 0.90, 0.5, lr="a")]
    ranked = [trials[2], trials[0]]  # c beat a in the cross-validation; b and d were not confirmed
    assert [t["trial_id"] for t in pick_members(trials, ranked, 4)] == ["c", "a", "b", "d"]  # e repeats a's config
    assert [t["trial_id"] for t in pick_members(trials, ranked, 1)] == ["c"]


def test_how_many_configs_fit_the_time_left() -> None:
    from search.confirm import how_many_fit

    # 3 folds each, 2 at a time: 30 s, 60 s, then 90 s of trainings per config
    assert how_many_fit([20.0, 20.0, 20.0, 20.0], folds=3, slots=2, seconds=100) == 3
    assert how_many_fit([20.0, 20.0, 20.0, 20.0], folds=3, slots=2, seconds=29) == 0
    assert how_many_fit([20.0, 100.0, 1.0], folds=3, slots=2, seconds=100) == 1  # the order is kept
    assert how_many_fit([20.0] * 3, folds=3, slots=1, seconds=1e9) == 3


def test_estimated_seconds_scale_the_trial_s_epochs_to_a_fold() -> None:
    from search.budget import TASK_OVERHEAD_S
    from search.confirm import estimated_seconds

    trial = {"config": {"epochs": 10}, "history": [{"train_seconds": 2.0, "val_seconds": 0.5}] * 3}
    # a fold trains on 2/3 of 900 faces, the trial trained on 600: the same epoch time
    assert estimated_seconds(trial, 3, 900, 600) == pytest.approx(10 * 2.5 + TASK_OVERHEAD_S)
    assert estimated_seconds(trial, 2, 1200, 600) == pytest.approx(10 * 2.5 + TASK_OVERHEAD_S)


def test_confirmation_resumes_from_its_saved_trainings_and_ranks_by_them(tmp_path: Path) -> None:
    """Every (config, fold) training already in confirm.json: nothing is trained again, the saved
    predictions decide the order, and a file from another split is not trusted."""
    import ray

    from fer_core.data import load
    from fer_core.splits import make_splits
    from search.confirm import CONFIRM_FILE, ConfirmSettings, confirm, folds_of, read_saved
    from search.space import seed_point
    from search.tasks import Resources

    splits = make_splits(load("synthetic:120"), "subject")
    rest = splits.train.concat(splits.val)
    parts = folds_of(rest, 2, 7)
    settings = ConfirmSettings(configs=2, folds=2, seed=7)
    candidates = [{"trial_id": "a", "final_metric": 0.9, "config": seed_point(), "history": []},
                  {"trial_id": "b", "final_metric": 0.5, "config": {**seed_point(), "dense_dropout": 0.3}, "history": []}]
    wrong = (rest.labels[parts[1][1]] + 1) % rest.n_classes
    done = {"a/0": {"predictions": [0] * len(parts[0][1])}, "a/1": {"predictions": wrong.tolist()},
            "b/0": {"predictions": rest.labels[parts[0][1]].tolist()},
            "b/1": {"predictions": rest.labels[parts[1][1]].tolist()}}
    (tmp_path / CONFIRM_FILE).write_text(json.dumps({"folds": 2, "seed": 7, "n_rest": len(rest), "done": done}))
    result = confirm(candidates, splits, settings, Resources(), tmp_path)
    assert not ray.is_initialized()  # nothing was trained
    assert [t["trial_id"] for t in result.ranked] == ["b", "a"]
    assert result.scores["b"]["cv_accuracy"] == 1.0 and result.scores["b"]["fold_accuracy"] == [1.0, 1.0]
    zeros = float((rest.labels[parts[0][1]] == 0).mean())
    assert result.scores["a"]["fold_accuracy"] == pytest.approx([zeros, 0.0])
    summary = result.summary()
    assert [row["trial_id"] for row in summary["trials"]] == ["b", "a"] and summary["n_scored"] == len(rest)
    assert read_saved(tmp_path / CONFIRM_FILE, 2, 8, len(rest)) == {}  # another fold seed: other folds
    assert read_saved(tmp_path / CONFIRM_FILE, 3, 7, len(rest)) == {}
    assert len(read_saved(tmp_path / CONFIRM_FILE, 2, 7, len(rest))) == 4


@pytest.mark.parametrize("all_broken", [False, True])
def test_configs_that_diverge_or_fail_in_a_fold_leave_the_ranking_and_the_final_model(tmp_path: Path,
                                                                                      all_broken: bool) -> None:
    """A config whose cross-validation diverged (or whose training failed) is never ranked, and
    never comes back as a final member through the search's own order."""
    from fer_core.data import load
    from fer_core.splits import make_splits
    from search.confirm import CONFIRM_FILE, ConfirmSettings, confirm, folds_of
    from search.pipeline import final_members
    from search.settings import RunSettings
    from search.space import seed_point
    from search.tasks import Resources

    splits = make_splits(load("synthetic:120"), "subject")
    rest = splits.train.concat(splits.val)
    parts = folds_of(rest, 2, 7)
    trials = [{"trial_id": name, "status": "completed", "final_metric": metric, "history": [],
               "config": {**seed_point(), "dense_dropout": 0.1 * i}}
              for i, (name, metric) in enumerate([("a", 0.9), ("b", 0.8), ("c", 0.7)])]
    right = {f: rest.labels[parts[f][1]].tolist() for f in (0, 1)}
    done = {"a/0": {"diverged": "training loss became nan"}, "a/1": {"predictions": right[1]},
            "b/0": {"predictions": right[0]}, "b/1": {"failed": "WorkerCrashedError: the worker died"},
            "c/0": {"predictions": right[0]},
            "c/1": {"diverged": "training loss became inf"} if all_broken else {"predictions": right[1]}}
    (tmp_path / CONFIRM_FILE).write_text(json.dumps({"folds": 2, "seed": 7, "n_rest": len(rest), "done": done}))
    result = confirm(trials, splits, ConfirmSettings(configs=3, folds=2, seed=7), Resources(), tmp_path)
    assert [t["trial_id"] for t in result.ranked] == ([] if all_broken else ["c"])
    assert sorted(result.excluded) == (["a", "b", "c"] if all_broken else ["a", "b"])
    assert [row["trial_id"] for row in result.summary()["trials"]] == ([] if all_broken else ["c"]) + \
        [t for t in ("a", "b", "c") if t in result.excluded]
    members = final_members(RunSettings(), splits, trials, result)
    assert [t["trial_id"] for t in members] == ([] if all_broken else ["c"])


def test_resume_of_a_run_from_before_confirm_keeps_it_without_confirmation(tmp_path: Path) -> None:
    from search.cli import RUN_DEFINING, parse_args, restore_args
    from search.rundir import RUN_FILE

    args = parse_args(["--name", "old", "--resume", "--output", str(tmp_path)])
    saved = {k: getattr(parse_args([]), k) for k in RUN_DEFINING if k not in ("confirm", "confirm_folds")}
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / RUN_FILE).write_text(json.dumps({"args": {**saved, "trials": 7}}))
    restored = restore_args(args, tmp_path / "old")
    assert restored.trials == 7 and restored.confirm == 0 and restored.confirm_folds == 3
    from search.cli import run_settings

    assert run_settings(parse_args([])).confirm.count(630) == 6  # a new run on a small data set confirms


@pytest.mark.parametrize("key, before, other", [("sampler", "startup", "tpe"), ("scheduler", "asha", "hyperband")])
def test_resume_of_a_run_from_before_a_search_flag_keeps_what_it_ran(tmp_path: Path, key: str, before: str,
                                                                    other: str) -> None:
    """A run.json from before --sampler (--scheduler) resumes with the random start (the recent-trials ASHA)."""
    from search.cli import RUN_DEFINING, parse_args, restore_args
    from search.rundir import RUN_FILE

    # the flag on the command line of a resume does not override the run's own
    args = parse_args(["--name", "old", "--resume", "--output", str(tmp_path), f"--{key}", other])
    saved = {k: getattr(parse_args([]), k) for k in RUN_DEFINING if k != key}
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / RUN_FILE).write_text(json.dumps({"args": saved}))
    assert getattr(restore_args(args, tmp_path / "old"), key) == before
    (tmp_path / "old" / RUN_FILE).write_text(json.dumps({"args": {**saved, key: other}}))
    assert getattr(restore_args(parse_args(["--name", "old", "--resume"]), tmp_path / "old"), key) == other


def test_rewriting_the_final_run_replaces_its_curves(tmp_path: Path) -> None:
    """A final model rebuilt by --resume writes TensorBoard's final run again: one event file, each epoch once."""
    import tensorflow as tf

    from search.report import plot_confusion
    from search.tensorboard import write_final_run

    figure = plot_confusion([[2, 0], [1, 1]], ["a", "b"])
    for losses in ([0.9, 0.5, 0.3], [0.8, 0.4, 0.2]):
        history = [{"epoch": i + 1, "train_loss": v} for i, v in enumerate(losses)]
        write_final_run(tmp_path / "final", history, ["a", "b"], figure)
    assert len(list((tmp_path / "final").glob("events.out.tfevents.*"))) == 1
    events = _events(tmp_path / "final")
    losses = [float(tf.make_ndarray(e.tensor_proto))
              for e in events.Tensors("final/train_loss")]
    assert losses == pytest.approx([0.8, 0.4, 0.2])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]


@pytest.mark.parametrize("flags, n_train, budget_s", [
    ([], 630, 27 * 60), ([], 16383, 27 * 60), ([], 16384, None), ([], 28709, None),
    (["--time-budget", "none"], 630, None), (["--time-budget", "None"], 28709, None),
    (["--time-budget", "2h"], 630, 7200), (["--time-budget", "2h"], 28709, 7200),
])
def test_a_small_data_set_is_bounded_by_default_a_large_one_only_when_asked(flags: list[str], n_train: int,
                                                                            budget_s) -> None:
    """Without ``--time-budget`` a run below 16,384 training faces has 27 minutes, a larger one no
    bound; ``--time-budget none`` lifts the bound, a duration given holds whatever the size."""
    from search.cli import parse_args, run_settings

    settings = run_settings(parse_args(["--data", "synthetic:300", *flags]))
    assert settings.budget_for(n_train) == budget_s
    assert run_settings(parse_args([])).budget_for(n_train) == 8 * 60  # the built-in faces' first look


@pytest.mark.parametrize("flag, n_train, count", [(None, 630, 6), (None, 16383, 6), (None, 16384, 0),
                                                  (None, 28709, 0), (4, 28709, 4), (0, 630, 0)])
def test_a_large_data_set_is_not_confirmed_unless_asked(flag, n_train: int, count: int) -> None:
    """``--confirm`` by default: 6 configs, none from 16,384 training faces on, where the search's
    ranking stands at once (nothing trains) and the report says why."""
    from types import SimpleNamespace

    from search.confirm import ConfirmSettings, confirm_leaders
    from search.tasks import Resources

    settings = ConfirmSettings(configs=flag)
    assert settings.count(n_train) == count
    if count:
        return
    trials = [_trial("a", 0.5, 0.2), _trial("b", 0.6, 0.1), _trial("c", 0.4, 0.1)]
    splits = SimpleNamespace(train=range(n_train), val=range(3589))
    result = confirm_leaders(trials, splits, settings, Resources(), Path("/nonexistent"), ensemble=2)
    assert [t["trial_id"] for t in result.ranked] == ["b", "a"] and result.scores == {}
    assert result.skipped == ("--confirm 0" if flag == 0 else f"{n_train} training faces: 3589 validation faces "
                                                                "decide alone")
