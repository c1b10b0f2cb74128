"""Test-time views beyond the mirror: does averaging a member's predictions over shifted or cropped
copies of each face, as well as its mirror image, score better on validation than the mirror alone?

Each member trains on FER2013's training faces on one thread (a prior config, for the rounds and
seconds given) and is scored on PublicTest (validation) under every view below; the test split is
never read. The views' probabilities are saved, so any set of views can be averaged afterwards.

``python -m experiments.study_test_views --data ../shared/data/fer2013 --out DIR NAME:SEED:ROUNDS:SECONDS ...``
trains the members one after another (NAME a candidate below, its schedule fitted to at most
SECONDS) and writes ``DIR/NAME-SEED.npz`` for each;
``python -m experiments.study_test_views --out DIR --combine M1 M2 ...`` prints, for each set of
views, each member's and the members' mean figures, and each against the mirror alone, paired;
``--ensembles A=M1,M2 B=M1,M2,M3 ...`` prints each ensemble (mirror views) against the first, paired:
whether a short member (a few rounds, as a member that starts late trains) weakens the mean.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

BASE = dict(normalize="standardize", padding="valid", rotation=0.0, shift=0.0, shear=0.0, zoom=0.0, flip=False,
            round_images=8192, learning_rate=1e-3, l2=1e-6)
CANDIDATES = {"seed_flip": dict(BASE, flip=True),  # the prior's first config
              "wide48_light": dict(BASE, base_filters=48, flip=True, rotation=10.0, shift=0.1, zoom=0.1)}
SHIFT = 2  # pixels of a 48-pixel face: the wider config trains with shifts up to 0.1 (4.8 px)
CROP = 44  # a ten-crop's side: four corners and the centre, resized back to 48


def shifted(images: np.ndarray, dx: int, dy: int) -> np.ndarray:
    padded = np.pad(images, ((0, 0), (SHIFT, SHIFT), (SHIFT, SHIFT), (0, 0)), mode="edge")
    height, width = images.shape[1:3]
    return padded[:, SHIFT + dy:SHIFT + dy + height, SHIFT + dx:SHIFT + dx + width]


def cropped(images: np.ndarray, top: int, left: int) -> np.ndarray:
    import tensorflow as tf

    part = images[:, top:top + CROP, left:left + CROP]
    return tf.image.resize(part, images.shape[1:3]).numpy().astype(np.float32)


def views(images: np.ndarray) -> dict[str, np.ndarray]:
    side = images.shape[1] - CROP
    base = {"face": images, **{f"shift{dx:+d}{dy:+d}": shifted(images, dx, dy)
                               for dx, dy in ((-SHIFT, 0), (SHIFT, 0), (0, -SHIFT), (0, SHIFT))},
            **{f"crop{t}{l}": cropped(images, t, l) for t, l in ((0, 0), (0, side), (side, 0), (side, side))},
            "cropc": cropped(images, side // 2, side // 2)}
    return {**base, **{f"m_{k}": v[:, :, ::-1] for k, v in base.items()}}


VIEW_SETS = {"face": ["face"], "mirror": ["face", "m_face"],
             "mirror+shifts": ["face", "m_face"] + [f"{m}shift{s}" for m in ("", "m_")
                                                   for s in ("-2+0", "+2+0", "+0-2", "+0+2")],
             "mirror+ten-crop": [f"{m}{c}" for m in ("", "m_") for c in ("crop00", "crop04", "crop40", "crop44", "cropc")],
             "all": None}


def train(args) -> None:
    from fer_core import TrainConfig, fit, load, make_splits, predict_proba

    splits = make_splits(load(args.data), "usage")
    shown = views(splits.val.images)
    for member in args.members:
        name, seed, rounds, limit = member.split(":")
        config = TrainConfig.from_dict(dict(CANDIDATES[name], seed=int(seed), epochs=int(rounds)))
        began = time.perf_counter()
        model, history = fit(config, splits.train, threads=1, seconds=float(limit))
        scored = {k: predict_proba(model, v) for k, v in shown.items()}
        right = np.mean((scored["face"] + scored["m_face"]).argmax(1) == splits.val.labels)
        print(f"{name}-{seed}: {len(history)} rounds in {time.perf_counter() - began:.0f} s; PublicTest with "
              f"the mirror {right:.4f}", flush=True)
        np.savez(Path(args.out) / f"{name}-{seed}.npz", labels=splits.val.labels, **scored)


def combine(args) -> None:
    from sklearn.metrics import f1_score

    loaded = {m: np.load(Path(args.out) / f"{m}.npz") for m in args.combine}
    labels = next(iter(loaded.values()))["labels"]
    rng = np.random.default_rng(0)
    picks = [rng.integers(0, len(labels), len(labels)) for _ in range(2000)]

    def mean(member, names) -> np.ndarray:
        names = names or [k for k in member.files if k != "labels"]
        return sum(member[k] for k in names) / len(names)

    for who, members in [*[(m, [x]) for m, x in loaded.items()], ("mean", list(loaded.values()))]:
        right = {label: (sum(mean(x, names) for x in members).argmax(1) == labels) for label, names in VIEW_SETS.items()}
        for label, names in VIEW_SETS.items():
            pred = sum(mean(x, names) for x in members).argmax(1)
            line = f"{who} {label}: {np.mean(pred == labels):.4f} / macro-F1 {f1_score(labels, pred, average='macro'):.4f}"
            if label != "mirror":
                diff = right[label].astype(float) - right["mirror"]
                boots = [diff[p].mean() for p in picks]
                line += f"; against the mirror {diff.mean():+.4f} ({np.percentile(boots, 2.5):+.4f} to {np.percentile(boots, 97.5):+.4f})"
            print(line)


def ensembles(args) -> None:
    from sklearn.metrics import f1_score

    out = Path(args.out)
    scored = {}
    for spec in args.ensembles:
        label, members = spec.split("=")
        loaded = [np.load(out / f"{m}.npz") for m in members.split(",")]
        scored[label] = (loaded[0]["labels"], sum(x["face"] + x["m_face"] for x in loaded))
    first = next(iter(scored))
    labels, base = scored[first]
    rng = np.random.default_rng(0)
    for label, (_, probabilities) in scored.items():
        pred = probabilities.argmax(1)
        line = f"{label}: {np.mean(pred == labels):.4f} / macro-F1 {f1_score(labels, pred, average='macro'):.4f}"
        if label != first:
            diff = (pred == labels).astype(float) - (base.argmax(1) == labels)
            boots = [diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(2000)]
            line += f"; against {first} {diff.mean():+.4f} ({np.percentile(boots, 2.5):+.4f} to {np.percentile(boots, 97.5):+.4f})"
        print(line)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="experiments.study_test_views")
    parser.add_argument("--data")
    parser.add_argument("--out", required=True)
    parser.add_argument("--combine", nargs="+")
    parser.add_argument("--ensembles", nargs="+")
    parser.add_argument("members", nargs="*")
    args = parser.parse_args()
    combine(args) if args.combine else ensembles(args) if args.ensembles else train(args)
