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


@pytest.fixture
def cluster():
    nodes = LoopbackCluster()
    try:
        nodes.start(num_cpus=1)
        nodes.add_node(num_cpus=1)
        yield nodes
    finally:
        nodes.stop()


def test_search_through_address_runs_trials_on_both_nodes(cluster: LoopbackCluster, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "search.run", "--address", cluster.address, "--data", "synthetic:300",
         "--trials", "4", "--max-epochs", "2", "--output", str(tmp_path), "--name", "c"],
        cwd=ROOT, capture_output=True, text=True, timeout=900, env=cluster.env())
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads((tmp_path / "c" / "report.json").read_text())
    assert len(report["trials"]) == 4
    # Ray names the head by the machine's address; the joined node keeps 127.0.0.2
    assert len({t["node_id"] for t in report["trials"]}) == 2
    assert "127.0.0.2" in {t["node_ip"] for t in report["trials"]}
    # the cluster is still up: the search left the processes it did not start alone
    assert cluster.node_pids("127.0.0.2")
