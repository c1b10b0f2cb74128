"""How long should the final members train? Compare epoch scales on validation, not test.

    python -m experiments.final_recipe runs/NAME/report.json --scales 1 2 --seed 43

Takes a finished run's report, the run's ``--members`` best configs (as ``search.run``
picks them), and trains each on the run's training part alone, at ``--seed`` (pick one no
trial used, so the configs' lucky draws do not favour the search's own epoch count), for
each scale times its trial's epochs. Each network, and the members' average, is scored on
the validation part with mirror test-time augmentation; the test split is never read.
This is how ``search.run``'s default ``--final-epochs-scale`` was chosen.

Trainings run in parallel, one process with one TensorFlow thread per CPU. Prints one line
per training, a table per scale, and as its last line one JSON object with all figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from fer_core.errors import ConfigError, run_cli

log = logging.getLogger("experiments.final_recipe")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m experiments.final_recipe", description=__doc__.split("\n")[0])
    p.add_argument("report", help="a finished run's report.json")
    p.add_argument("--members", type=int, default=5, help="how many of the run's best configs (default 5)")
    p.add_argument("--scales", type=float, nargs="+", default=[1.0, 2.0], help="epoch scales to compare (default 1 2)")
    p.add_argument("--seed", type=int, default=43, help="training seed (default 43; the search trained at 42)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel trainings (default: CPUs)")
    p.add_argument("--data", default=None, help="the data set, if it moved since the run (default: the report's)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    path = Path(args.report)
    try:
        report = json.loads(path.read_text())
        trials, data_source, split_method = report["trials"], args.data or report["data"], report["split"]
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"{path}: not a run's report.json ({exc.__class__.__name__}: {exc})") from None
    if args.members < 1 or args.workers < 1 or any(s <= 0 for s in args.scales):
        raise ConfigError("--members and --workers must be >= 1 and every --scales value > 0")

    from fer_core.data import load
    from fer_core.evaluate import evaluate_predictions
    from search.run import _retrain_task, final_config, make_splits, pick_ensemble

    members = pick_ensemble(trials, args.members)
    if not members:
        raise ConfigError(f"{path}: no finished trial to take a config from")
    splits = make_splits(load(data_source), split_method)
    y, names = splits.val.labels, splits.val.class_names
    jobs = [(t, scale) for scale in args.scales for t in members]
    with ProcessPoolExecutor(max_workers=args.workers, mp_context=get_context("spawn")) as pool:
        # search.run's own retrain: train on the training part, mirror TTA, score the validation part
        futures = [pool.submit(_retrain_task, dataclasses.replace(final_config(t["config"], scale), seed=args.seed)
                               .to_dict(), splits.train, splits.val, 1) for t, scale in jobs]
        probabilities, accuracy = {}, {}
        for (trial, scale), future in zip(jobs, futures):
            key = (trial["trial_id"], scale)
            probabilities[key] = future.result()["probabilities"]
            accuracy[key] = float((probabilities[key].argmax(1) == y).mean())
            log.info("trial %s x%g: validation accuracy %.3f", trial["trial_id"], scale, accuracy[key])

    results = {}
    for scale in args.scales:
        members_acc = {t["trial_id"]: accuracy[(t["trial_id"], scale)] for t in members}
        mean = np.mean([probabilities[(t["trial_id"], scale)] for t in members], axis=0)
        ensemble = evaluate_predictions(y, mean.argmax(1), names)
        epochs = {t["trial_id"]: final_config(t["config"], scale).epochs for t in members}
        results[f"{scale:g}"] = {"members": members_acc, "epochs": epochs, "member_mean": float(np.mean(list(members_acc.values()))),
                                 "ensemble_accuracy": ensemble["accuracy"], "ensemble_macro_f1": ensemble["macro_f1"]}
    print(f"{len(members)} best configs of {path}, trained on {len(splits.train)} training faces at seed "
          f"{args.seed}, scored on {len(y)} validation faces ({split_method} split)")
    print(f"{'scale':>6} {'member mean':>12} {'ensemble':>9} {'ens. F1':>8}  members")
    for scale, row in results.items():
        print(f"{scale:>6} {row['member_mean']:>12.3f} {row['ensemble_accuracy']:>9.3f} {row['ensemble_macro_f1']:>8.3f}  "
              + " ".join(f"{k}:{v:.3f}" for k, v in row["members"].items()))
    print(json.dumps({"report": str(path), "seed": args.seed, "n_val": len(y), "scales": results}))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="experiments.final_recipe"))
