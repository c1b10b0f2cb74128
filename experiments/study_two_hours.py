"""What the members of a two-hour run that does not search should be: the prior's wider network
(its third config) trained for most of a two-hour run on one thread, against the same family on
64 filters, the next width. At one hour the wider network was still learning (67.4% on its
training faces); the two-hour search spent its hour on the seed's CNN. Each candidate trained on
FER2013's training faces on one thread for the given seconds, scored on PublicTest (validation);
the test split is never read.

``python -m experiments.study_two_hours --data ../shared/data/fer2013 --out DIR NAME SECONDS``
writes ``DIR/NAME.json`` (config, rounds, every round's validation figures) and ``DIR/NAME.npz`` (the
PublicTest probabilities with the mirror averaged in); ``--combine A B`` (with ``--out DIR``) prints
A alone against B alone and against the mean of A and B, paired on the same faces.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

BASE = dict(normalize="standardize", padding="valid", rotation=0.0, shift=0.0, shear=0.0, zoom=0.0, flip=False,
            round_images=8192, epochs=400, learning_rate=1e-3, l2=1e-6)
CANDIDATES = {"seed_flip": dict(BASE, flip=True),  # the prior's first config
              # the prior's third: 48, 96, 192 filters, 2.2 times the seed's FLOPs a face
              "wide48_light": dict(BASE, base_filters=48, flip=True, rotation=10.0, shift=0.1, zoom=0.1),
              # 64, 128, 256 filters: 3.9 times
              "wide64_light": dict(BASE, base_filters=64, flip=True, rotation=10.0, shift=0.1, zoom=0.1)}


def train(args) -> None:
    from fer_core import TrainConfig, build_predictor, evaluate_predictions, fit, load, make_splits, predict_proba

    splits = make_splits(load(args.data), "usage")
    config = TrainConfig.from_dict(CANDIDATES[args.name])
    began = time.perf_counter()
    out = Path(args.out)
    model, history = fit(config, splits.train, splits.val, threads=1, seconds=args.seconds,
                         checkpoint=out / f"{args.name}.ckpt")
    seconds = time.perf_counter() - began
    probabilities = predict_proba(build_predictor([model], mirror=True), splits.val.images)
    val = evaluate_predictions(splits.val.labels, probabilities.argmax(axis=1), splits.val.class_names)
    np.savez(out / f"{args.name}.npz", probabilities=probabilities, labels=splits.val.labels)
    row = {"name": args.name, "rounds": len(history), "seconds": seconds, "history": history,
           "val_mirror": {k: val[k] for k in ("accuracy", "macro_f1", "balanced_accuracy")}}
    (out / f"{args.name}.json").write_text(json.dumps(row, indent=1, default=float))
    print(f"{args.name}: {len(history)} rounds in {seconds:.0f} s; PublicTest with mirror {val['accuracy']:.4f} / "
          f"{val['macro_f1']:.4f}", flush=True)


def combine(args) -> None:
    from sklearn.metrics import f1_score

    out = Path(args.out)
    a, b = (np.load(out / f"{n}.npz") for n in args.combine)
    labels = a["labels"]
    alone = a["probabilities"].argmax(1) == labels
    pair = (a["probabilities"] + b["probabilities"]).argmax(1) == labels
    diff = pair.astype(float) - alone
    rng = np.random.default_rng(0)
    boots = [diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(2000)]
    for name, probs in (("A alone", a["probabilities"]), ("B alone", b["probabilities"]),
                        ("mean of A and B", a["probabilities"] + b["probabilities"])):
        pred = probs.argmax(1)
        print(f"{name}: {np.mean(pred == labels):.4f} / macro-F1 {f1_score(labels, pred, average='macro'):.4f}")
    print(f"paired gain {diff.mean():+.4f} (95% CI {np.percentile(boots, 2.5):+.4f} to {np.percentile(boots, 97.5):+.4f})")
    versus = (b["probabilities"].argmax(1) == labels).astype(float) - alone
    boots = [versus[rng.integers(0, len(versus), len(versus))].mean() for _ in range(2000)]
    print(f"B alone minus A alone {versus.mean():+.4f} (95% CI {np.percentile(boots, 2.5):+.4f} to "
          f"{np.percentile(boots, 97.5):+.4f})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="experiments.study_two_hours")
    parser.add_argument("--data")
    parser.add_argument("--out", required=True)
    parser.add_argument("--combine", nargs=2)
    parser.add_argument("name", nargs="?")
    parser.add_argument("seconds", nargs="?", type=float)
    args = parser.parse_args()
    combine(args) if args.combine else train(args)
