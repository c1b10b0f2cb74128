"""Benchmark fine-tuning over seeds: one fine-tuning run per seed, its figures, and their means.

    python -m experiments.bench_transfer --init runs/fer/best --seeds 1 2 3 4 -- \\
        --data ../shared/data/ck48 --split subject --time-budget 12m

Each seed is one ``python -m experiments.bench_search`` (its wall-clock and memory) of
``python -m search.run --seed S --init INIT`` and the arguments after ``--``. Printed: a
row per seed (test accuracy with its 95% interval, macro-F1, the seed's recipe from scratch
on the same split, the majority class, minutes), the means, and as the last line one JSON
object with all of it. ``--skip-done`` reuses the runs a previous call finished, so the
seeds can be run a part at a time and merged.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np


def run_seed(seed: int, init: str, output: Path, search_args: list[str], skip_done: bool) -> dict:
    name = f"seed{seed}"
    saved = output / f"{name}.json"
    if skip_done and saved.exists():
        return json.loads(saved.read_text())
    command = [sys.executable, "-m", "experiments.bench_search", "--", *search_args, "--seed", str(seed),
               "--init", init, "--output", str(output), "--name", name]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"seed {seed} failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    report = json.loads((output / name / "report.json").read_text())
    figures.update(seed=seed, test_accuracy_ci95=report["test_accuracy_ci95"], n_test=report["n_test"],
                   initialized_from=report["initialized_from"]["source"])
    saved.write_text(json.dumps(figures))
    return figures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--init", required=True, help="the model to fine-tune (a run's best/ folder)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--output", default="/tmp/bench_transfer", help="folder of the runs")
    parser.add_argument("--skip-done", action="store_true", help="reuse the seeds a previous call finished")
    parser.add_argument("search_args", nargs=argparse.REMAINDER, help="-- then the arguments of search.run")
    args = parser.parse_args(argv)
    search_args = args.search_args[1:] if args.search_args[:1] == ["--"] else args.search_args
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    rows = [run_seed(seed, args.init, output, search_args, args.skip_done) for seed in args.seeds]
    print("seed | test accuracy (95% CI) | macro-F1 | seed recipe from scratch (acc / F1) | majority | minutes")
    for r in rows:
        low, high = r["test_accuracy_ci95"]
        print(f"{r['seed']} | {r['test_accuracy']:.1%} ({low:.1%}-{high:.1%}) | {r['test_macro_f1']:.3f} | "
              f"{r['seed_recipe_test_accuracy']:.1%} / {r['seed_recipe_test_macro_f1']:.3f} | "
              f"{r['majority_accuracy']:.1%} | {r['wall_clock_s'] / 60:.1f}")
    means = {key: float(np.mean([r[key] for r in rows])) for key in
             ("test_accuracy", "test_macro_f1", "seed_recipe_test_accuracy", "seed_recipe_test_macro_f1")}
    longest = max(r["wall_clock_s"] for r in rows) / 60
    print(f"mean over seeds {args.seeds}: {means['test_accuracy']:.1%} / {means['test_macro_f1']:.3f}; seed recipe "
          f"{means['seed_recipe_test_accuracy']:.1%} / {means['seed_recipe_test_macro_f1']:.3f}; "
          f"longest run {longest:.1f} min")
    print(json.dumps({"seeds": rows, "mean": means, "longest_run_min": round(longest, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
