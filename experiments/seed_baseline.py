"""Train the seed notebook's recipe through the core and test it on a held-out split.

    python -m experiments.seed_baseline --data ../shared/data/ck48 --split random

Prints progress on stderr and, as its last line on stdout, one JSON object with the test
figures (accuracy, macro-F1, balanced accuracy, majority-class accuracy, the split).
A bad data file or flag prints one line and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

from fer_core import SEED_BASELINE_ACCURACY, SPLITS, TrainConfig, evaluate_model, load, resolve_split, run_cli, split

log = logging.getLogger("experiments.seed_baseline")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m experiments.seed_baseline", description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="synthetic", help="CSV file, folder of class folders, or synthetic[:N]")
    parser.add_argument("--split", default="random", choices=SPLITS, help="held-out test split (default: random)")
    parser.add_argument("--seed", type=int, default=42, help="training seed (the split's seed stays 42)")
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs, help="epochs, both phases together")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="TensorFlow threads")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if args.epochs < 1:
        from fer_core import ConfigError
        raise ConfigError(f"--epochs {args.epochs}: expected an integer >= 1")
    data = load(args.data)
    method = resolve_split(data, args.split)
    log.info("data: %s", data.describe())
    train, test = split(data, method)
    config = TrainConfig(seed=args.seed, epochs=args.epochs)
    started = time.perf_counter()
    from fer_core import fit

    model, history = fit(config, train, threads=args.threads)
    seconds = time.perf_counter() - started
    metrics = evaluate_model(model, test)
    result = {
        "test_accuracy": metrics["accuracy"],
        "test_macro_f1": metrics["macro_f1"],
        "test_balanced_accuracy": metrics["balanced_accuracy"],
        "test_accuracy_ci95": metrics["accuracy_ci95"],
        "majority_accuracy": metrics["majority_accuracy"],
        "seed_baseline_accuracy": SEED_BASELINE_ACCURACY,
        "split": method,
        "seed": args.seed,
        "n_train": len(train),
        "n_test": len(test),
        "epochs": len(history),
        "train_seconds": round(seconds, 1),
        "data": data.source,
    }
    log.info("confusion matrix (rows true %s):\n%s", ",".join(test.class_names),
             "\n".join(" ".join(f"{v:3d}" for v in row) for row in metrics["confusion_matrix"]))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="seed_baseline"))
