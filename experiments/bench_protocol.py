"""Benchmark the papers' protocol: a K-fold subject-independent run, its wall-clock and pooled figures.

    python -m experiments.bench_protocol --data ~/data/CK+48                       # 10 folds, from scratch
    python -m experiments.bench_protocol --data ~/data/CK+48 -- --init runs/fer/best --time-budget 90m

Runs ``python -m search.run --folds K`` (K = ``--folds``, default 10) with any further
``search.run`` flags after ``--``, then prints the whole run's wall-clock, the pooled test
accuracy with its 95% interval, macro-F1 and balanced accuracy over every face, the seed
recipe's and the majority class's figures on the same faces, and a line per fold. The last
line is one JSON object with all of them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Optional

FOLDS = 10  # the papers' CK+ protocol


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.bench_protocol", description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the data set (CK+48's folder, a manifest, ...)")
    parser.add_argument("--folds", default=str(FOLDS), help=f"outer folds, or loso (default {FOLDS})")
    parser.add_argument("--output", default="runs", help="folder of runs (default runs/)")
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="after --: more search.run flags")
    args = parser.parse_args(argv)
    rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
    name = f"protocol-{datetime.now():%Y%m%d-%H%M%S}"
    command = [sys.executable, "-m", "search.run", "--data", args.data, "--folds", args.folds,
               "--output", args.output, "--name", name, *rest]
    print("$", " ".join(command), flush=True)
    started = time.perf_counter()
    result = subprocess.run(command, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        print(f"search.run exited with {result.returncode} after {wall / 60:.1f} min", file=sys.stderr)
        return result.returncode
    report = json.loads((Path(args.output) / name / "report.json").read_text())
    low, high = report["test_accuracy_ci95"]
    seed = report["seed_recipe_test"] or {}
    print(f"{report['protocol']}, {report['n_test']} faces, whole run {wall / 60:.1f} min")
    print(f"  final models   {report['test_accuracy']:.1%} (95% CI {low:.1%}-{high:.1%}), macro-F1 "
          f"{report['test_macro_f1']:.3f}, balanced {report['test_balanced_accuracy']:.1%}")
    if seed:
        print(f"  seed recipe    {seed['accuracy']:.1%}, macro-F1 {seed['macro_f1']:.3f}")
    print(f"  majority class {report['majority_accuracy']:.1%}")
    for fold in report["folds"]:
        print(f"  fold {fold['fold'] + 1}: {fold['n_test']} faces, {fold['people']} people, "
              f"{fold['test']['accuracy']:.1%} / {fold['test']['macro_f1']:.3f}, {fold['seconds'] / 60:.1f} min")
    print(json.dumps({"command": command, "wall_clock_s": round(wall, 1), "run": name,
                      "test_accuracy": report["test_accuracy"], "test_accuracy_ci95": report["test_accuracy_ci95"],
                      "test_macro_f1": report["test_macro_f1"],
                      "test_balanced_accuracy": report["test_balanced_accuracy"],
                      "seed_recipe_test_accuracy": seed.get("accuracy"),
                      "seed_recipe_test_macro_f1": seed.get("macro_f1"),
                      "majority_accuracy": report["majority_accuracy"],
                      "folds": [{"fold": f["fold"], "n_test": f["n_test"], "people": f["people"],
                                 "accuracy": f["test"]["accuracy"], "macro_f1": f["test"]["macro_f1"],
                                 "seconds": f["seconds"]} for f in report["folds"]]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
