"""The search on a real two-node Ray cluster on loopback, and a node lost mid-search."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cluster import LoopbackCluster
from conftest import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    """One cluster for the module: starting it takes a head and a node's worth of ``ray start``.
    The lost-node test kills the worker node, so it comes last."""
    nodes = LoopbackCluster()
    try:
        nodes.start(num_cpus=1)
        nodes.add_node(num_cpus=1)
        yield nodes
    finally:
        nodes.stop()


def test_search_through_address_runs_trials_on_both_nodes(cluster: LoopbackCluster, tmp_path: Path) -> None:
    # a confirmation and a final model of two each: their trainings run as tasks on the cluster too
    result = subprocess.run(
        [sys.executable, "-m", "search.run", "--address", cluster.address, "--data", "synthetic:300",
         "--trials", "4", "--max-epochs", "2", "--confirm", "2", "--confirm-folds", "2", "--ensemble", "2",
         "--final-epochs-scale", "1", "--output", str(tmp_path), "--name", "c"],
        cwd=ROOT, capture_output=True, text=True, timeout=900, env=cluster.env())
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads((tmp_path / "c" / "report.json").read_text())
    assert len(report["trials"]) == 4
    # Ray names the head by the machine's address; the joined node keeps 127.0.0.2
    assert len({t["node_id"] for t in report["trials"]}) == 2
    assert "127.0.0.2" in {t["node_ip"] for t in report["trials"]}
    # the cluster is still up: the search left the processes it did not start alone
    assert cluster.node_pids("127.0.0.2")


def _checkpointed_trial_running_on(tune_dir: Path, node_ip: str, epochs_left: int, max_epochs: int) -> bool:
    """Whether a trial on ``node_ip`` has a checkpoint and at least ``epochs_left`` epochs still to run.

    Without early stopping such a trial is certainly still running. Its result file trails
    the trial by the driver's bookkeeping, so the margin must outlast that lag plus the
    kill: with two epochs (about a second each here) a loaded CI machine let the trial end first."""
    for folder in tune_dir.glob("trial_*"):
        rows = (folder / "result.json").read_text().splitlines() if (folder / "result.json").exists() else []
        if rows and any(folder.glob("checkpoint_*")):
            try:
                last = json.loads(rows[-1])
            except json.JSONDecodeError:  # a row being written
                continue
            if last["node_ip"] == node_ip and last["training_iteration"] <= max_epochs - epochs_left:
                return True
    return False


def test_a_trial_on_a_lost_worker_node_continues_from_its_checkpoint_on_the_other(cluster: LoopbackCluster,
                                                                                   tmp_path: Path) -> None:
    assert cluster.node_pids("127.0.0.2"), "the worker node is gone before the test could lose it"
    epochs = 10
    # what is asserted is the search's; the final stage is one member at its trial's epochs
    driver = subprocess.Popen(
        [sys.executable, "-m", "search.run", "--address", cluster.address, "--data", "synthetic:300",
         "--trials", "3", "--max-epochs", str(epochs), "--scheduler", "none", "--confirm", "0",
         "--ensemble", "1", "--final-epochs-scale", "1", "--output", str(tmp_path), "--name", "n"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=cluster.env())
    try:
        deadline = time.time() + 300
        while time.time() < deadline and driver.poll() is None and \
                not _checkpointed_trial_running_on(tmp_path / "n" / "tune", "127.0.0.2", 6, epochs):
            time.sleep(0.1)
        assert driver.poll() is None, "the search ended before a node could be lost"
        assert time.time() < deadline, "no trial with a checkpoint ran on the worker node within 300 s"
        assert cluster.kill_node("127.0.0.2") > 0
        _, stderr = driver.communicate(timeout=900)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, stderr[-4000:]
    report = json.loads((tmp_path / "n" / "report.json").read_text())
    # the third trial starts after the loss, on the node left
    assert len(report["trials"]) == 3 and report["trials_completed"] == 3, report["trials"]
    # the lost trial's own records: epochs on one node, then, restored from its checkpoint, on the other
    moved = [t for t in report["trials"] if len({row.get("node_id") for row in t["history"]}) == 2]
    assert len(moved) == 1, [[row.get("node_id") for row in t["history"]] for t in report["trials"]]
    history = moved[0]["history"]
    restored_at = history[-1]["restored_from_epoch"]
    assert restored_at >= 1 and moved[0]["status"] == "completed"
    assert [row["epoch"] for row in history] == list(range(1, epochs + 1))  # continued, not restarted
    before, after = history[:restored_at], history[restored_at:]
    assert after and len({row["node_id"] for row in before}) == 1 and len({row["node_id"] for row in after}) == 1
