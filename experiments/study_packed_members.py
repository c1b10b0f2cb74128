"""More, shorter members for a run that does not search: each thread trains the prior's configs one
after another, each for the faces where it does best, instead of one member a thread for the whole
budget. The prior's first config (the seed's CNN with the mirror image) peaks at about 80 rounds
of 8,192 faces and then learns its faces by heart; its third (48 filters, light geometric
augmentation) levels off from about a million faces ("Longer members or more of them?"). Each
member trains on FER2013's training faces on one thread, is scored on PublicTest (validation) with
the mirror averaged in; the test split is never read.

``python -m experiments.study_packed_members --data ../shared/data/fer2013 --out DIR NAME:SEED:ROUNDS:SECONDS ...``
trains the members named one after another (NAME a candidate below; ROUNDS its schedule's rounds,
SECONDS the most it may take, its schedule fitted to them) and writes ``DIR/NAME-SEED.json`` and
``.npz`` for each; ``--combine A=M1,M2 B=M3,M4,...`` prints each ensemble's figures (the mean of its
members' probabilities) and each against the first, paired on the same faces.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

BASE = dict(normalize="standardize", padding="valid", rotation=0.0, shift=0.0, shear=0.0, zoom=0.0, flip=False,
            round_images=8192, learning_rate=1e-3, l2=1e-6)
CANDIDATES = {"seed_flip": dict(BASE, flip=True),  # the prior's first config
              # the prior's third: 48, 96, 192 filters, 2.2 times the seed's FLOPs a face
              "wide48_light": dict(BASE, base_filters=48, flip=True, rotation=10.0, shift=0.1, zoom=0.1)}


def train(args) -> None:
    from fer_core import TrainConfig, build_predictor, evaluate_predictions, fit, load, make_splits, predict_proba

    splits = make_splits(load(args.data), "usage")
    out = Path(args.out)
    for member in args.members:
        name, seed, rounds, limit = member.split(":")
        config = TrainConfig.from_dict(dict(CANDIDATES[name], seed=int(seed), epochs=int(rounds)))
        began = time.perf_counter()
        model, history = fit(config, splits.train, splits.val, threads=1, seconds=float(limit))
        seconds = time.perf_counter() - began
        probabilities = predict_proba(build_predictor([model], mirror=True), splits.val.images)
        val = evaluate_predictions(splits.val.labels, probabilities.argmax(axis=1), splits.val.class_names)
        key = f"{name}-{seed}"
        np.savez(out / f"{key}.npz", probabilities=probabilities, labels=splits.val.labels)
        row = {"name": key, "rounds": len(history), "seconds": seconds, "history": history,
               "val_mirror": {k: val[k] for k in ("accuracy", "macro_f1", "balanced_accuracy")}}
        (out / f"{key}.json").write_text(json.dumps(row, indent=1, default=float))
        print(f"{key}: {len(history)} rounds in {seconds:.0f} s; PublicTest with mirror {val['accuracy']:.4f} / "
              f"{val['macro_f1']:.4f}; training accuracy {history[-1].get('train_accuracy', float('nan')):.3f}",
              flush=True)


def combine(args) -> None:
    from sklearn.metrics import f1_score

    out = Path(args.out)
    ensembles = {}
    for spec in args.combine:
        label, members = spec.split("=")
        loaded = [np.load(out / f"{m}.npz") for m in members.split(",")]
        ensembles[label] = (loaded[0]["labels"], sum(x["probabilities"] for x in loaded))
    first = next(iter(ensembles))
    labels, base = ensembles[first]
    right_first = (base.argmax(1) == labels).astype(float)
    rng = np.random.default_rng(0)
    for label, (_, probabilities) in ensembles.items():
        pred = probabilities.argmax(1)
        line = f"{label}: {np.mean(pred == labels):.4f} / macro-F1 {f1_score(labels, pred, average='macro'):.4f}"
        if label != first:
            diff = (pred == labels) - right_first
            boots = [diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(2000)]
            line += (f"; against {first} {diff.mean():+.4f} (95% CI {np.percentile(boots, 2.5):+.4f} to "
                     f"{np.percentile(boots, 97.5):+.4f})")
        print(line)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="experiments.study_packed_members")
    parser.add_argument("--data")
    parser.add_argument("--out", required=True)
    parser.add_argument("--combine", nargs="+")
    parser.add_argument("members", nargs="*")
    args = parser.parse_args()
    combine(args) if args.combine else train(args)
