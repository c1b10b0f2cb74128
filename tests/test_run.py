"""The search command end to end (:mod:`search.run`): a real small search, its report, model and
TensorBoard files; a search in rounds; a killed driver resumed; a failing trial; a time budget
kept across a resume."""

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

from conftest import ROOT, search_run, tensorboard_events
from search.records import TrialRecord

# two trials: every trial is also confirmed on 3 folds and retrained on 2 inputs in the end-to-end run
SMALL_SEARCH = ["--data", "synthetic:300", "--trials", "2", "--max-epochs", "2"]


@pytest.mark.slow
def test_small_search_end_to_end(tmp_path: Path) -> None:
    result = search_run(*SMALL_SEARCH, "--final-mixup", "0.3", "--final-inputs", "standardize", "equalize",
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
    assert report["trials_completed"] + report["trials_failed"] == 2 == len(report["trials"])
    assert report["search_wall_clock_s"] > 0
    # no --time-budget on a small data set: the run is bounded by the default, planned from its start
    assert report["time_budget_s"] == 27 * 60 == report["budget_plan"]["total_s"]
    assert "time budget 1620 s, a small data set's default (--time-budget none: no bound)" in result.stderr
    assert json.loads((run / "budget.json").read_text())["plan"] == report["budget_plan"]
    for trial in report["trials"]:
        assert trial["tf_threads"] == 1  # --cpus-per-trial defaults to 1
        assert trial["node_ip"] and trial["epochs"] >= 1 and trial["status"] in ("completed", "stopped_early")
        assert set(trial["config"]) >= {"conv_blocks", "learning_rate", "schedule"}
    # the seed's recipe is the first point of the search
    from search.tuning.space import seed_point

    assert any(all(t["config"][k] == v for k, v in seed_point().items()) for t in report["trials"])
    # report.md and plots
    markdown = (run / "report.md").read_text()
    assert "seed recipe" in markdown and "macro-F1" in markdown
    # the trials' table shows each trial's cost, which --cost-weight weighs
    assert all(f"| {TrialRecord.from_json(t).epoch_seconds:.1f} |" in markdown for t in report["trials"])
    for png in ("confusion_matrix", "search_history", "learning_curves"):
        assert (run / "plots" / f"{png}.png").stat().st_size > 1000
    # exported model: all forms load and agree (the core's round trip is tested in test_train)
    card = json.loads((run / "best" / "model_card.json").read_text())
    assert card["metrics"]["test_accuracy"] == report["test_accuracy"]
    # the final model: the 2 trials' configs (all there are, fewer than the default --ensemble),
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
    # the 2 configs, cross-validated (3 folds by default) over train + validation, rank the members
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
    assert len(trial_dirs) == 2
    for trial_dir in trial_dirs:
        events = tensorboard_events(trial_dir)
        assert {"val_accuracy", "val_macro_f1", "train_loss"} <= set(events.Tags()["tensors"])
        assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams")
        steps = [e.step for e in events.Tensors("val_accuracy")]
        assert steps == list(range(1, len(steps) + 1))
    assert "_hparams_/experiment" in tensorboard_events(tb).PluginTagToContent("hparams")
    final = tensorboard_events(tb / "final")
    assert "final/confusion_matrix" in final.Tags()["tensors"] and "final/train_loss" in final.Tags()["tensors"]
    assert len(final.Tensors("final/train_loss")) == final_epochs


@pytest.fixture(scope="module")
def rounds_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """One search in rounds, weighing cost, whose second point diverges: the rounds test and the
    failing-trial test assert different things about it, and each run costs a Ray start, its
    trials and the seed recipe's retrain."""
    output = tmp_path_factory.mktemp("rounds")
    points = output / "points.json"
    points.write_text(json.dumps([{"learning_rate": 1e4}]))  # Adam at this rate drives the loss to NaN
    result = search_run("--data", "synthetic:300", "--trials", "3", "--max-epochs", "2", "--round-images", "64",
                        "--points", str(points), "--confirm", "0", "--ensemble", "1", "--final-inputs",
                        "standardize", "--scheduler", "none", "--cost-weight", "3", "--time-budget", "none",
                        "--output", str(output), "--name", "r")
    return result, output / "r"


@pytest.mark.slow
def test_a_search_in_rounds_reports_and_retrains_in_rounds(rounds_run) -> None:
    """``--round-images`` (a large data set's default, here forced on a small one): every trial's
    epoch is that many faces, its budget ``--max-epochs`` passes of them, the final member trains
    its trial's rounds times the scale, and run.json keeps the rounds for a resume. ``--cost-weight`` runs
    through the same search: the member is the one its rule picks, and the report says so."""
    from search.final.ranking import pick_ensemble

    result, run = rounds_run
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads((run / "report.json").read_text())
    assert report["time_budget_s"] is None and report["budget_plan"] is None  # --time-budget none: no bound
    assert json.loads((run / "budget.json").read_text())["plan"] is None
    assert "the final stage will take about" in result.stderr
    rounds = -(-2 * report["n_train"] // 64)
    assert report["round_images"] == 64 and rounds > 2
    # every trial in rounds; the two that did not diverge (test_a_trial_that_raises_...) ran all of theirs
    assert all(t["config"]["round_images"] == 64 for t in report["trials"])
    assert [(t["epochs"], t["status"]) for t in report["trials"] if t["status"] != "failed"] == \
        [(rounds, "completed")] * 2
    assert report["ensemble"][0]["epochs"] == round(rounds * report["final_epochs_scale"])
    assert "a round of 64 training faces" in (run / "report.md").read_text()
    assert json.loads((run / "run.json").read_text())["args"]["round_images"] == 64
    assert report["cost_weight"] == 3 and "within 3 standard errors" in (run / "report.md").read_text()
    trials = [TrialRecord.from_json(t) for t in report["trials"]]
    assert report["best_trial_id"] == pick_ensemble(trials, 1, cost_weight=3, faces=report["n_val"])[0].trial_id
    assert json.loads((run / "run.json").read_text())["args"]["cost_weight"] == 3


def _cross_validation_matches_the_saved_predictions(run: Path, confirmation: dict) -> None:
    """confirm.json's out-of-fold predictions, put back on the faces they scored, give the report's figures."""
    from fer_core.data import load
    from search.final.confirm import folds_of
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
    # two confirmation folds and a final model of one member at its trial's epochs: what is asserted
    # is which trials ran, were kept and were confirmed, not the final model
    args = ["--data", "synthetic:300", "--trials", "5", "--max-epochs", "3", "--confirm-folds", "2",
            "--output", str(tmp_path), "--name", "k"]
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

    result = search_run("--output", str(tmp_path), "--name", "k", "--resume", "--ensemble", "1",
                        "--final-epochs-scale", "1")
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
def test_a_run_interrupted_in_its_final_stage_goes_on_from_its_trainings_saved_states(tmp_path: Path) -> None:
    """Ctrl-C while the final member trains: exit 130 naming --resume; the resumed run continues that
    training from its last saved epoch instead of from the first, and leaves no states behind."""
    from fer_core.checkpoint import CHECKPOINT_PERIOD_ENV, STATE_FILE

    final = ["--confirm", "0", "--ensemble", "1", "--final-inputs", "standardize", "--final-epochs-scale", "25"]
    env = {**os.environ, CHECKPOINT_PERIOD_ENV: "0"}  # a state every epoch, in the driver's Ray workers too
    driver = subprocess.Popen([sys.executable, "-m", "search.run", "--data", "synthetic:300", "--trials", "2",
                               "--max-epochs", "2", *final, "--output", str(tmp_path), "--name", "f"],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              preexec_fn=_ctrl_c_as_in_a_terminal)
    states = tmp_path / "f" / "final"

    def member_epochs() -> int:  # the member trains 2 x 25 epochs; the seed's recipe, beside it, 20
        rows = [json.loads(p.read_text()) for p in states.glob(f"*/{STATE_FILE}")]
        return max([len(r["history"]) for r in rows if r["config"]["epochs"] == 50], default=0)

    deadline = time.time() + 600
    while time.time() < deadline and driver.poll() is None and member_epochs() < 3:
        time.sleep(0.2)
    assert driver.poll() is None, "the run ended before its final stage could be interrupted"
    driver.send_signal(signal.SIGINT)
    _, stderr = driver.communicate(timeout=300)
    assert driver.returncode == 130 and stderr.count("--resume") == 1, stderr[-3000:]
    saved = member_epochs()
    assert 3 <= saved < 50 and not (tmp_path / "f" / "report.json").exists()

    result = search_run("--output", str(tmp_path), "--name", "f", "--resume", *final, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    member = json.loads((tmp_path / "f" / "report.json").read_text())["ensemble"][0]
    assert member["epochs"] == 50 and member["resumed_from_epoch"] == saved
    assert f"saved state after epoch {saved} of 50" in (tmp_path / "f" / "report.md").read_text()
    assert not states.exists()  # the run is done: nothing resumes them any more


@pytest.mark.slow
def test_a_trial_that_raises_is_recorded_as_failed_and_the_search_completes(rounds_run) -> None:
    result, run = rounds_run  # the search in rounds: its second point, lr 1e4, diverges
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads((run / "report.json").read_text())
    failed = [t for t in report["trials"] if t["status"] == "failed"]
    assert len(report["trials"]) == 3 and report["trials_failed"] == 1 == len(failed)
    assert failed[0]["config"]["learning_rate"] == 1e4
    assert "TrainingDiverged" in failed[0]["error"] and "nan" in failed[0]["error"]
    assert report["best_config"]["learning_rate"] != 1e4
    assert "TrainingDiverged" in (run / "report.md").read_text()


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
    # the plan and the search time spent are the budget's (budget.json), not the run's state (run.json)
    plan = json.loads((tmp_path / "b" / "budget.json").read_text())["plan"]
    assert not {"plan", "search_seconds"} & set(json.loads((tmp_path / "b" / "run.json").read_text()))
    assert 0 < _spent(tmp_path / "b") <= plan["search_s"] + 30  # saved when the interrupted search stopped
    assert plan["total_s"] == 90 and plan["search_s"] + plan["confirm_s"] + plan["final_s"] <= 90 - plan["startup_s"]
    left_s = plan["search_s"] - _spent(tmp_path / "b")
    time.sleep(max(0.0, left_s) + 1)  # the search's share is over by now

    result = search_run("--output", str(tmp_path), "--name", "b", "--resume")
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert report["budget_plan"] == plan and 1 <= len(report["trials"]) < 50
    assert all(t["status"] in ("completed", "stopped_early") for t in report["trials"])
    # the resumed attempt searched at most what the first left of the share, and Tune's restore (a
    # trial pending at the deadline trains a round): 30 s alone was once exceeded beside the full suite
    assert report["timings"]["search_s"] < max(0.0, left_s) + 30
    assert report["timings"]["run_s"] <= 1.1 * 90


def _ctrl_c_as_in_a_terminal() -> None:
    """Ctrl-C's default in the run's process: a shell's background job (a suite started with ``&``)
    ignores it and hands that on, and the run rightly keeps ignoring it after Tune's search."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _spent(run: Path) -> float:
    """The search seconds the run's attempts spent so far, as its budget keeps them."""
    from search.budget import Budget

    return Budget.load(run).search_spent_s
