"""Time the README's first command from a fresh clone: install, then the 50-trial run on the built-in faces.

    python -m experiments.bench_first_run [--runs 3] [--repo .] [--workdir /tmp/fer-first-run]

Each run clones the repository (its committed state) into a new folder, creates a virtual
environment and installs the project (timed apart: the target is the time after the
install), then runs ``python -m search.run --trials 50`` there, as the README says. It
prints one line per run (install and run wall-clock, the final model's and the seed
recipe's test accuracy with their 95% intervals and macro-F1, the majority class, trials
finished) and as its last line one JSON object with all of them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

TARGET_S = 600  # the first command must end within 10 minutes after the install, on 2 cores
MAIN_COMMAND = ["-m", "search.run", "--trials", "50"]


def one_run(repo: Path, folder: Path) -> dict[str, Any]:
    """Clone, install, run; return the wall-clocks and the report's figures."""
    clone = folder / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    clock = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(clone / ".venv")], check=True)
    python = str(clone / ".venv" / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "--quiet", "-e", "."], cwd=clone, check=True)
    install_s = time.perf_counter() - clock
    clock = time.perf_counter()
    done = subprocess.run([python, *MAIN_COMMAND], cwd=clone, capture_output=True, text=True)
    run_s = time.perf_counter() - clock
    (folder / "stderr.txt").write_text(done.stderr)
    row: dict[str, Any] = {"install_s": round(install_s, 1), "run_s": round(run_s, 1), "exit": done.returncode}
    report = _report(clone / "runs")
    if report is not None:
        row.update(test_accuracy=report["test_accuracy"], test_ci95=report["test_accuracy_ci95"],
                   test_macro_f1=report["test_macro_f1"], seed_accuracy=report["seed_recipe_test_accuracy"],
                   seed_ci95=(report["seed_recipe_test"] or {}).get("accuracy_ci95"),
                   seed_macro_f1=report["seed_recipe_test_macro_f1"], majority=report["majority_accuracy"],
                   trials=len(report["trials"]), timings=report["timings"], n_test=report["n_test"])
    return row


def _report(runs: Path) -> Optional[dict[str, Any]]:
    found = sorted(runs.glob("*/report.json"))
    return json.loads(found[-1].read_text()) if found else None


def _line(i: int, row: dict[str, Any]) -> str:
    if "test_accuracy" not in row:
        return f"run {i}: exit {row['exit']} after {row['run_s']:.0f} s, no report"
    pct = lambda v: f"{100 * v:.1f}%"  # noqa: E731
    seed_ci = row["seed_ci95"] or [float("nan")] * 2
    return (f"run {i}: install {row['install_s']:.0f} s, run {row['run_s']:.0f} s "
            f"({'within' if row['run_s'] <= TARGET_S else 'OVER'} {TARGET_S} s); {row['trials']} trials; "
            f"final model {pct(row['test_accuracy'])} ({pct(row['test_ci95'][0])}-{pct(row['test_ci95'][1])}) "
            f"F1 {row['test_macro_f1']:.3f}; seed recipe {pct(row['seed_accuracy'])} "
            f"({pct(seed_ci[0])}-{pct(seed_ci[1])}) F1 {row['seed_macro_f1']:.3f}; "
            f"majority {pct(row['majority'])} of {row['n_test']} test faces")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.bench_first_run", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--repo", default=".", help="the repository to clone (default: this one)")
    parser.add_argument("--workdir", default=None, help="where the clones go (default: a new temporary folder)")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="fer-first-run-"))
    rows = []
    for i in range(1, args.runs + 1):
        folder = workdir / f"run{i}"
        folder.mkdir(parents=True)
        rows.append(one_run(Path(args.repo).resolve(), folder))
        print(_line(i, rows[-1]), flush=True)
    print(json.dumps({"target_s": TARGET_S, "runs": rows}))
    return 0 if all(r["exit"] == 0 and r["run_s"] <= TARGET_S for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
