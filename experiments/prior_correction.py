"""Should the final model's decision correct for the class priors? Measure it without the test split.

    python -m experiments.prior_correction runs/NAME [runs/OTHER ...] [--test]

CK+'s small classes (contempt 5%, fear 8%, sadness 8% of the faces) carry most of the
final model's errors, and macro-F1 weighs them as much as the large ones. Logit
adjustment (Menon et al., 2021) moves the decision towards them without retraining:
predict ``argmax_k log p_k - tau * log prior_k``, with ``prior`` the class shares of
train + validation; ``tau = 0`` is the plain argmax, ``tau = 1`` the balanced-error rule.

Reads a finished run's ``confirm.json`` (``search/confirm.py``): the out-of-fold class
probabilities of each confirmed config on every train + validation face. The run's final
members (``report.json``'s ``ensemble``, those the confirmation scored) are averaged, as
the final model averages them, and each rule is scored on those out-of-fold predictions:

- ``tau=T`` for each fixed ``T`` of :data:`TAUS`;
- ``nested``: for each confirmation fold, ``tau`` is chosen from :data:`TAUS` by macro-F1 on
  the other folds' faces and applied to this fold's faces: what a run could pick by itself.

With ``--test`` it also loads the run's exported ``best/model.keras`` and scores each fixed
rule, and ``nested``'s choice made on all train + validation faces, on the test split: a
check of the out-of-fold figures, not a way to choose. Prints one table per run, the mean
over runs, and as its last line one JSON object.
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

TAUS = (0.0, 0.25, 0.5, 0.75, 1.0)


def adjusted(probabilities: np.ndarray, prior: np.ndarray, tau: float) -> np.ndarray:
    """Predicted classes of ``[N, K]`` ``probabilities`` after logit adjustment by ``tau * log prior``."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    prior = np.asarray(prior, dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape[1] != prior.shape[0]:
        raise ValueError(f"expected probabilities [N, {prior.shape[0]}], got {probabilities.shape}")
    if np.any(prior <= 0):
        raise ValueError("every class needs a positive prior")
    return (np.log(np.clip(probabilities, 1e-12, None)) - tau * np.log(prior)).argmax(axis=1)


def choose_tau(probabilities: np.ndarray, labels: np.ndarray, prior: np.ndarray, taus=TAUS) -> float:
    """The ``tau`` of ``taus`` with the best macro-F1 on ``labels``; ties go to the smaller ``tau``."""
    from sklearn.metrics import f1_score

    classes = np.arange(len(prior))
    taus = sorted(taus)
    scores = [f1_score(labels, adjusted(probabilities, prior, t), labels=classes, average="macro", zero_division=0)
              for t in taus]
    return float(taus[int(np.argmax(scores))])


def nested_predictions(probabilities: np.ndarray, labels: np.ndarray, prior: np.ndarray,
                       folds: list[np.ndarray]) -> tuple[np.ndarray, list[float]]:
    """Each fold's faces predicted with the ``tau`` chosen on the other folds' faces."""
    predicted = np.empty(len(labels), dtype=np.int64)
    chosen = []
    for scored in folds:
        others = np.setdiff1d(np.arange(len(labels)), scored)
        tau = choose_tau(probabilities[others], labels[others], prior)
        chosen.append(tau)
        predicted[scored] = adjusted(probabilities[scored], prior, tau)
    return predicted, chosen


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m experiments.prior_correction", description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", help="finished run folders (report.json, confirm.json, best/model.keras)")
    p.add_argument("--test", action="store_true", help="also score the exported final model on the test split")
    p.add_argument("--data", default=None, help="the data set, if it moved since the runs (default: each report's)")
    return p.parse_args(argv)


def study(run: Path, data_source: Optional[str], with_test: bool) -> dict:
    from experiments.member_choice import read_run
    from fer_core.evaluate import evaluate_predictions

    ids, probabilities, labels, folds, class_names = read_run(run, data_source)
    report = json.loads((run / "report.json").read_text())
    members = [m["trial_id"] for m in report.get("ensemble", [])]
    chosen = [ids.index(t) for t in dict.fromkeys(members) if t in ids]
    if not chosen:
        raise ConfigError(f"{run}: none of the final members was confirmed")
    average = probabilities[chosen].mean(axis=0)
    prior = np.bincount(labels, minlength=len(class_names)) / len(labels)
    rows = {}
    for tau in TAUS:
        figures = evaluate_predictions(labels, adjusted(average, prior, tau), class_names)
        rows[f"tau={tau:g}"] = {"tau": tau, "cv_accuracy": figures["accuracy"], "cv_macro_f1": figures["macro_f1"]}
    predicted, taus = nested_predictions(average, labels, prior, folds)
    figures = evaluate_predictions(labels, predicted, class_names)
    rows["nested"] = {"cv_accuracy": figures["accuracy"], "cv_macro_f1": figures["macro_f1"], "taus": taus}
    result = {"members": len(chosen), "faces": len(labels), "prior": prior.round(4).tolist(), "rows": rows}
    if with_test:
        from fer_core.data import load
        from fer_core.export import load_predictors
        from search.run import make_splits

        test = make_splits(load(data_source or report["data"]), report["split"]).test
        test_probabilities = load_predictors(run / "best")["keras"](test.images)
        rows["nested"]["test_tau"] = choose_tau(average, labels, prior)
        for row in rows.values():
            tau = row.get("test_tau", row.get("tau"))
            figures = evaluate_predictions(test.labels, adjusted(test_probabilities, prior, tau), class_names)
            row.update(test_accuracy=figures["accuracy"], test_macro_f1=figures["macro_f1"])
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    results = {}
    for name in args.runs:
        run = Path(name)
        result = results[str(run)] = study(run, args.data, args.test)
        print(f"{run}: {result['members']} members averaged, {result['faces']} out-of-fold faces")
        for rule, row in result["rows"].items():
            test = (f"  test accuracy {row['test_accuracy']:.3f}  macro-F1 {row['test_macro_f1']:.3f}"
                    if "test_accuracy" in row else "")
            print(f"  {rule:>9}  cv accuracy {row['cv_accuracy']:.3f}  macro-F1 {row['cv_macro_f1']:.3f}{test}")
    keys = [k for k in ("cv_accuracy", "cv_macro_f1", "test_accuracy", "test_macro_f1")
            if all(k in row for r in results.values() for row in r["rows"].values())]
    rules = next(iter(results.values()))["rows"]
    mean = {rule: {k: float(np.mean([r["rows"][rule][k] for r in results.values()])) for k in keys} for rule in rules}
    if len(results) > 1:
        print(f"mean over {len(results)} runs:")
        for rule, row in mean.items():
            print(f"  {rule:>9}  " + "  ".join(f"{k} {v:.3f}" for k, v in row.items()))
    print(json.dumps({"runs": results, "mean": mean}))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="experiments.prior_correction"))
