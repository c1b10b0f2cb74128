"""A real Ray cluster on loopback for tests: a head and worker nodes, each `ray start`.

Each node gets its own loopback address (127.0.0.1 for the head, 127.0.0.2, ... for the
workers), so that ``node_ip`` in results tells the nodes apart, and its own temporary
folder, so that stopping the cluster kills exactly the processes it started and no
other Ray on the machine.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY = str(Path(sys.executable).parent / "ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LoopbackCluster:
    """Start with :meth:`start`, add nodes with :meth:`add_node`, end with :meth:`stop`."""

    def __init__(self) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.nodes: dict[str, Path] = {}  # node ip -> its temporary folder

    def _start(self, ip: str, *args: str) -> None:
        temp = Path(tempfile.mkdtemp(prefix="ftr-", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
        self.nodes[ip] = temp
        subprocess.run([RAY, "start", f"--node-ip-address={ip}", f"--temp-dir={temp}", "--disable-usage-stats",
                        *args], check=True, capture_output=True, text=True, timeout=120, env=self.env())

    @staticmethod
    def env() -> dict[str, str]:
        """Environment for the nodes and for drivers that join them.

        Ray turns token authentication on for a head when a token file exists, but not
        for a node that joins it; saying the mode outright makes every process agree.
        """
        return {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled",
                # every epoch leaves a checkpoint, so a trial on a lost node has one to continue from
                "FER_TUNE_CHECKPOINT_S": "0",
                # the head's GCS calls a node dead after this many failed checks this often apart:
                # 3 x 1 s instead of Ray's 5 x 3 s; a killed node refuses at once, a live one answers
                # within the check's default 10 s even on a loaded machine
                "RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3"}

    def start(self, num_cpus: int = 1) -> "LoopbackCluster":
        self._start("127.0.0.1", "--head", f"--port={self.port}", f"--num-cpus={num_cpus}",
                    "--include-dashboard=false")
        return self

    def add_node(self, num_cpus: int = 1) -> str:
        ip = f"127.0.0.{len(self.nodes) + 1}"
        self._start(ip, f"--address={self.address}", f"--num-cpus={num_cpus}")
        return ip

    def node_pids(self, ip: str) -> list[int]:
        """Processes of one node: those whose command line names its temporary folder."""
        marker = str(self.nodes[ip]).encode()
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if marker in (entry / "cmdline").read_bytes():
                        pids.append(int(entry.name))
                except OSError:
                    continue
        return pids

    def kill_node(self, ip: str) -> int:
        """SIGKILL every process of one node (a machine lost); return how many."""
        pids = self.node_pids(ip)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return len(pids)

    def stop(self) -> None:
        """Kill the processes this cluster started, and only those; remove its folders."""
        for ip in list(self.nodes)[::-1]:
            self.kill_node(ip)
        time.sleep(1)
        for temp in self.nodes.values():
            shutil.rmtree(temp, ignore_errors=True)
