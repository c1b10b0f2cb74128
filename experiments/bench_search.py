"""Benchmark a search: wall-clock, where the time goes, and memory as trials accumulate.

    python -m experiments.bench_search -- --trials 4 --max-epochs 3 --data ../shared/data/ck48 --split subject

Everything after ``--`` goes to ``python -m search.run`` (``--output`` and ``--name``
default to a fresh folder under /tmp). While the search runs, the resident memory of the
driver, of the trial workers (``ray::`` processes) and of Ray's own processes is sampled
every half second from /proc, and noted as the 5th and the last trial finish. At the end
it prints the figures, and as its last line one JSON object with all of them.

Memory is sampled two ways. RSS adds up each process's resident pages, so a page that
several processes map (TensorFlow's libraries, an object in Ray's store that workers read)
counts once per process. PSS (``/proc/PID/smaps_rollup``) splits each shared page among the
processes that map it, so its sum over the tree is the memory the run holds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

PAGE_KIB = 4  # /proc/PID/statm counts 4 KiB pages on x86-64 and aarch64 Linux


def _children(root: int) -> list[int]:
    """``root`` and all its descendants, from /proc (Ray's local cluster is the driver's subtree)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(parents.get(pid, []))
    return found


def _rss_mib(pid: int) -> float:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KIB / 1024
    except (OSError, IndexError, ValueError):
        return 0.0


def _pss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except (OSError, IndexError, ValueError):
        pass
    return 0.0


def _kind(pid: int, driver: int) -> str:
    if pid == driver:
        return "driver"
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "ray"
    return "workers" if cmdline.startswith(b"ray::") else "ray"


def _finished_trials(tune_dir: Path) -> int:
    count = 0
    for state_file in tune_dir.glob("experiment_state-*.json"):
        try:
            state = json.loads(state_file.read_text())
        except (OSError, json.JSONDecodeError):
            return -1
        count = sum(json.loads(t)["status"] in ("TERMINATED", "ERROR") for t, _ in state["trial_data"])
    return count


class MemorySampler(threading.Thread):
    """Samples RSS and PSS by kind every ``period`` seconds; keeps peaks and snapshots at trial counts."""

    def __init__(self, driver: int, tune_dir: Path, marks: tuple[int, ...], period: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.driver, self.tune_dir, self.marks, self.period = driver, tune_dir, marks, period
        self.peak = {"driver": 0.0, "workers": 0.0, "ray": 0.0, "total": 0.0}
        self.peak_pss = dict(self.peak)
        self.at_trials: dict[int, dict[str, float]] = {}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            sample = {"driver": 0.0, "workers": 0.0, "ray": 0.0}
            pss = dict(sample)
            for pid in _children(self.driver):
                kind = _kind(pid, self.driver)
                sample[kind] += _rss_mib(pid)
                pss[kind] += _pss_mib(pid)
            sample["total"], pss["total"] = sum(sample.values()), sum(pss.values())
            for key in sample:
                self.peak[key] = max(self.peak[key], sample[key])
                self.peak_pss[key] = max(self.peak_pss[key], pss[key])
            finished = _finished_trials(self.tune_dir)
            for mark in self.marks:
                if finished >= mark and mark not in self.at_trials:
                    self.at_trials[mark] = {k: round(v) for k, v in sample.items()}
            self.done.wait(self.period)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.bench_search", description=__doc__.split("\n")[0])
    parser.add_argument("search_args", nargs=argparse.REMAINDER, help="-- then the arguments of search.run")
    args = parser.parse_args(argv)
    search_args = [a for a in args.search_args if a != "--"]
    if "--output" not in search_args:
        search_args += ["--output", tempfile.mkdtemp(prefix="fer-bench-")]
    if "--name" not in search_args:
        search_args += ["--name", "bench"]
    run_dir = Path(search_args[search_args.index("--output") + 1]) / search_args[search_args.index("--name") + 1]
    trials = int(search_args[search_args.index("--trials") + 1]) if "--trials" in search_args else 50

    started = time.perf_counter()
    driver = subprocess.Popen([sys.executable, "-m", "search.run", *search_args])
    sampler = MemorySampler(driver.pid, run_dir / "tune", marks=tuple(sorted({min(5, trials), trials})))
    sampler.start()
    code = driver.wait()
    wall = time.perf_counter() - started
    sampler.done.set()
    sampler.join()
    if code != 0:
        print(f"bench_search: search.run exited with status {code}", file=sys.stderr)
        return code

    report = json.loads((run_dir / "report.json").read_text())
    rows = [row for t in report["trials"] for row in t["history"]]
    trial_seconds = sum(t["history"][-1].get("time_total_s", 0.0) for t in report["trials"] if t["history"])
    train_seconds = sum(row.get("train_seconds", 0.0) for row in rows)
    val_seconds = sum(row.get("val_seconds", 0.0) for row in rows)
    timings = report["timings"]
    cpus = float(search_args[search_args.index("--cpus-per-trial") + 1]) if "--cpus-per-trial" in search_args else 1.0
    slots = max(1, min(len(report["trials"]), int(os.cpu_count() // cpus)))  # trials that can run at once
    figures = {
        "wall_clock_s": round(wall, 1),
        **{k: round(v, 1) for k, v in timings.items()},
        # before main's clock: the interpreter, imports, argument checks (run_s is main's whole run)
        "startup_s": round(wall - timings.get("run_s", sum(timings.values())), 1),
        "trials": len(report["trials"]), "trials_completed": report["trials_completed"],
        "trials_failed": report["trials_failed"], "epochs_run": len(rows),
        "trial_seconds_sum": round(trial_seconds, 1),
        "train_step_seconds_sum": round(train_seconds, 1),
        "validation_seconds_sum": round(val_seconds, 1),
        "train_share_of_trial_time": round(train_seconds / trial_seconds, 3) if trial_seconds else None,
        "concurrent_slots": slots,
        "search_overhead_share": round(1 - trial_seconds / (timings["search_s"] * slots), 3)
        if timings["search_s"] else None,
        "test_accuracy": round(report["test_accuracy"], 4), "test_macro_f1": round(report["test_macro_f1"], 4),
        "seed_recipe_test_accuracy": round(report["seed_recipe_test_accuracy"], 4),
        "seed_recipe_test_macro_f1": round(report["seed_recipe_test_macro_f1"], 4),
        "majority_accuracy": round(report["majority_accuracy"], 4), "split": report["split"],
        "peak_rss_mib": {k: round(v) for k, v in sampler.peak.items()},
        "peak_pss_mib": {k: round(v) for k, v in sampler.peak_pss.items()},
        "rss_mib_at_trials": sampler.at_trials,
        "run_dir": str(run_dir),
    }
    print("\n=== bench_search ===")
    for key, value in figures.items():
        print(f"{key:>28}: {value}")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
