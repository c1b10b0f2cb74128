"""Which figure foretells a winner's test accuracy: its validation accuracy or cross-validation?

    python -m experiments.rescore_winners A/compare.json [B/compare.json ...] [--folds 3] [--seed 0]

Takes the winners of finished comparisons (``experiments.compare_tuners``), whose test
accuracy is known (the mean of their retrains), and scores each winner's config by K-fold
cross-validation over train + validation: by subject where the data has subject ids,
stratified by class, for the config's epochs at its training seed, with mirror test-time
augmentation, as ``search/confirm.py`` does after a search. The test split is read only
through the comparisons' own figures. Prints one line per winner (validation, cross-validated
and test accuracy), the rank correlation (Spearman) of each figure with the test accuracy,
and as its last line one JSON object.

Trainings run in parallel, one process with one TensorFlow thread per CPU
(``experiments.final_recipe.train_on_folds``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np

from fer_core.errors import ConfigError, run_cli



def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m experiments.rescore_winners", description=__doc__.split("\n")[0])
    p.add_argument("comparisons", nargs="+", help="compare.json files of finished comparisons (one data set)")
    p.add_argument("--folds", type=int, default=3, help="cross-validation folds (default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the fold assignment (default 0)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel trainings (default: CPUs)")
    return p.parse_args(argv)


def read_winners(paths: list[str]) -> tuple[dict, list[dict]]:
    """The comparisons' shared protocol (data, split) and their winners with a test figure."""
    protocol, winners = None, []
    for name in paths:
        try:
            report = json.loads(Path(name).read_text())
            rows, here = report["rows"], {"data": report["data"], "split": report["split"]}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{name}: not a compare.json ({exc.__class__.__name__}: {exc})") from None
        if protocol is not None and here != protocol:
            raise ConfigError(f"{name}: data {here['data']!r}, split {here['split']!r}; expected "
                              f"{protocol['data']!r}, {protocol['split']!r} as in {paths[0]}")
        protocol = here
        winners += [{"source": name, "seed": r["seed"], "tool": r["tool"], "config": r["winner_config"],
                     "val_accuracy": r["best_val_accuracy"], "test_accuracy": r["test_accuracy"]}
                    for r in rows if r.get("winner_config") and r.get("test_accuracy") is not None]
    if len(winners) < 3:
        raise ConfigError(f"{len(winners)} winner(s) with a test figure in {', '.join(paths)}: a rank "
                          "correlation needs 3 or more")
    return protocol, winners


def spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b)[0])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if args.folds < 2 or args.workers < 1:
        raise ConfigError(f"--folds {args.folds} / --workers {args.workers}: expected folds >= 2 and workers >= 1")
    protocol, winners = read_winners(args.comparisons)

    from fer_core.data import load
    from search.confirm import folds_of
    from experiments.final_recipe import train_on_folds
    from search.run import make_splits

    splits = make_splits(load(protocol["data"]), protocol["split"])
    rest = splits.train.concat(splits.val)
    try:
        parts = [(rest.subset(a), rest.subset(b)) for a, b in folds_of(rest, args.folds, args.seed)]
    except ConfigError as exc:
        raise ConfigError(f"--folds {args.folds}: {exc}") from None
    probabilities = train_on_folds({(w["seed"], w["tool"], i): w["config"] for i, w in enumerate(winners)},
                                   parts, args.workers)
    right = {(key[2], f): p.argmax(1) == parts[f][1].labels for (key, f), p in probabilities.items()}
    for i, winner in enumerate(winners):
        winner["cv_accuracy"] = float(np.concatenate([right[(i, f)] for f in range(len(parts))]).mean())
    tests = [w["test_accuracy"] for w in winners]
    result = {"comparisons": args.comparisons, "folds": args.folds, "n_scored": len(rest),
              "spearman_val_test": spearman([w["val_accuracy"] for w in winners], tests),
              "spearman_cv_test": spearman([w["cv_accuracy"] for w in winners], tests),
              "winners": [{k: v for k, v in w.items() if k != "config"} for w in winners]}
    print(f"{'seed':>5} {'tool':>11} {'validation':>10} {'cross-val':>9} {'test':>6}")
    for w in winners:
        print(f"{w['seed']:>5} {w['tool']:>11} {w['val_accuracy']:>10.3f} {w['cv_accuracy']:>9.3f} "
              f"{w['test_accuracy']:>6.3f}")
    print(f"rank correlation with test accuracy: validation {result['spearman_val_test']:+.2f}, "
          f"{args.folds}-fold cross-validation over {len(rest)} faces {result['spearman_cv_test']:+.2f}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="experiments.rescore_winners"))
