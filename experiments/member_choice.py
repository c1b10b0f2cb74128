"""Which configs should the final model average? Compare ways to choose, without the test split.

    python -m experiments.member_choice runs/NAME [runs/OTHER ...]

Reads a finished run's ``confirm.json``: the out-of-fold class probabilities of each
confirmed config on every train + validation face (``search/confirm.py``). Every way of
choosing members is scored *nested*: for each confirmation fold, the choice is made on the
out-of-fold predictions of the other folds' faces only, and scored on this fold's faces;
the figures are over all train + validation faces. The ways:

- ``search-K``: the K best configs in the search's order (validation), no choice made here;
- ``cv-K``: the K best by cross-validated accuracy (what ``search.run`` does with K = ``--ensemble``);
- ``greedy``: ensemble selection (Caruana et al., 2004; as in auto-sklearn): start empty, add
  with replacement the config whose addition scores best, 20 times; a config's weight is
  how often it was added (:func:`select_greedy`), at most ``search.run``'s default
  ``--ensemble`` of distinct configs; ``greedy-free`` without that cap.

Averages are of the mirror-averaged probabilities the confirmation saved. Prints one table
per run and, over all runs, the mean accuracy and macro-F1 of each way, and as its last
line one JSON object. Runs from before the probabilities were saved are refused.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Optional

import numpy as np

from fer_core.errors import ConfigError, run_cli

SIZES = (1, 3, 5, 8)
GREEDY_STEPS = 20  # additions; weights are multiples of 1/20


def select_greedy(probabilities: np.ndarray, labels: np.ndarray, steps: int = GREEDY_STEPS,
                  max_members: Optional[int] = None) -> np.ndarray:
    """Weights (summing to 1) of the ``C`` configs whose ``[C, N, K]`` ``probabilities`` score ``labels``.

    Each step adds the config that gives the running average the highest accuracy on
    ``labels``; ties go to the lower log loss, then to the earlier config (the caller's
    order, best first). Once ``max_members`` distinct configs are in, only they are added
    again. Returns ``C`` weights, zero for configs never added. Adding with replacement
    lets a strong config count more than a weak one without fitting the weights freely.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if probabilities.ndim != 3 or probabilities.shape[1] != len(labels) or not len(probabilities):
        raise ValueError(f"expected probabilities [configs, {len(labels)}, classes], got {probabilities.shape}")
    n_configs = len(probabilities)
    faces = np.arange(len(labels))
    counts = np.zeros(n_configs, dtype=np.int64)
    total = np.zeros(probabilities.shape[1:], dtype=np.float64)
    for step in range(1, steps + 1):
        candidates = (total[None] + probabilities) / step  # [C, N, K]: the average with each config added
        value = (candidates.argmax(axis=2) == labels).mean(axis=1)
        loss = -np.log(np.clip(candidates[:, faces, labels], 1e-7, 1.0)).mean(axis=1)
        allowed = [c for c in range(n_configs)
                   if max_members is None or counts[c] or np.count_nonzero(counts) < max_members]
        best = min(allowed, key=lambda c: (-value[c], loss[c], c))
        counts[best] += 1
        total += probabilities[best]
    return counts / counts.sum()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m experiments.member_choice", description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", help="finished run folders (report.json and confirm.json)")
    p.add_argument("--pool", type=int, default=None,
                   help="choose among only the first N confirmed configs in the search's order, as a run "
                        "with --confirm N would have (default: all)")
    p.add_argument("--data", default=None, help="the data set, if it moved since the runs (default: each report's)")
    return p.parse_args(argv)


def read_run(run: Path, data_source: str | None) -> tuple[list[str], np.ndarray, np.ndarray, list[np.ndarray], list]:
    """A run's confirmed configs in search order, their out-of-fold probabilities, labels and folds."""
    from fer_core.data import load
    from search.confirm import CONFIRM_FILE, folds_of
    from search.run import make_splits

    try:
        report = json.loads((run / "report.json").read_text())
        saved = json.loads((run / CONFIRM_FILE).read_text())
        rows, folds, seed = report["confirmation"]["trials"], saved["folds"], saved["seed"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{run}: not a finished run with a confirmation ({exc.__class__.__name__}: {exc})") from None
    # the confirmation's rows are in its own order; the search's order is by validation
    confirmed = sorted((r for r in rows if "cv_accuracy" in r), key=lambda r: -r["val_metric"])
    if len(confirmed) < 2:
        raise ConfigError(f"{run}: {len(confirmed)} confirmed config(s); expected 2 or more")
    splits = make_splits(load(data_source or report["data"]), report["split"])
    rest = splits.train.concat(splits.val)
    parts = folds_of(rest, folds, seed)
    ids, probabilities = [], []
    for row in confirmed:
        entries = [saved["done"].get(f"{row['trial_id']}/{f}", {}) for f in range(folds)]
        if any("probabilities" not in e for e in entries):
            raise ConfigError(f"{run / CONFIRM_FILE}: trial {row['trial_id']} has no saved probabilities "
                              "(a run from before they were saved)")
        oof = np.zeros((len(rest), rest.n_classes), dtype=np.float64)
        for (_, scored), entry in zip(parts, entries):
            oof[scored] = np.asarray(entry["probabilities"])
        ids.append(row["trial_id"])
        probabilities.append(oof)
    return ids, np.stack(probabilities), rest.labels, [scored for _, scored in parts], rest.class_names


def nested(choose, probabilities: np.ndarray, labels: np.ndarray, folds: list[np.ndarray]) -> np.ndarray:
    """Predicted classes of every face, each fold's by weights ``choose`` picked on the other folds' faces."""
    predicted = np.empty(len(labels), dtype=np.int64)
    for scored in folds:
        others = np.setdiff1d(np.arange(len(labels)), scored)
        weights = np.asarray(choose(probabilities[:, others], labels[others]), dtype=np.float64)
        predicted[scored] = np.tensordot(weights, probabilities[:, scored], axes=1).argmax(axis=1)
    return predicted


def strategies(n: int) -> dict:
    """The ways of choosing, by name: each maps (probabilities [C, N, K], labels) to weights [C]."""
    from search.run import DEFAULT_ENSEMBLE

    def first(k):
        return lambda p, y: np.arange(n) < k

    def by_cv(k):
        def choose(p, y):
            accuracy = (p.argmax(axis=2) == y).mean(axis=1)
            order = sorted(range(n), key=lambda c: -accuracy[c])  # stable: search order on ties
            return np.isin(np.arange(n), order[:k])
        return choose

    ways = {}
    for k in SIZES:
        if k <= n:
            ways[f"search-{k}"] = first(k)
            ways[f"cv-{k}"] = by_cv(k)
    ways[f"search-{n}"] = first(n)
    ways["greedy"] = lambda p, y: select_greedy(p, y, GREEDY_STEPS, max_members=DEFAULT_ENSEMBLE)
    ways["greedy-free"] = lambda p, y: select_greedy(p, y, GREEDY_STEPS)
    return ways


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.pool is not None and args.pool < 2:
        raise ConfigError(f"--pool {args.pool}: expected an integer >= 2")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    from fer_core.evaluate import evaluate_predictions

    results = {}
    for name in args.runs:
        run = Path(name)
        ids, probabilities, labels, folds, class_names = read_run(run, args.data)
        ids, probabilities = ids[:args.pool], probabilities[:args.pool]
        rows = {}
        for way, choose in strategies(len(ids)).items():
            figures = evaluate_predictions(labels, nested(choose, probabilities, labels, folds), class_names)
            rows[way] = {"accuracy": figures["accuracy"], "macro_f1": figures["macro_f1"]}
        results[str(run)] = {"configs": len(ids), "faces": len(labels), "rows": rows}
        print(f"{run}: {len(ids)} confirmed configs, {len(labels)} faces, nested over {len(folds)} folds")
        for way, row in rows.items():
            print(f"  {way:>10}  accuracy {row['accuracy']:.3f}  macro-F1 {row['macro_f1']:.3f}")
    # "search-K" for the K of each run's pool differs between runs: the mean takes the ways all share
    first = next(iter(results.values()))["rows"]
    mean = {way: {key: float(np.mean([r["rows"][way][key] for r in results.values()]))
                  for key in ("accuracy", "macro_f1")}
            for way in first if all(way in r["rows"] for r in results.values())}
    if len(results) > 1:
        print(f"mean over {len(results)} runs (ways every run has):")
        for way, row in mean.items():
            print(f"  {way:>10}  accuracy {row['accuracy']:.3f}  macro-F1 {row['macro_f1']:.3f}")
    print(json.dumps({"runs": results, "mean": mean}))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="experiments.member_choice"))
