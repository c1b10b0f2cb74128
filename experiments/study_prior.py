"""Which configs make FER Tune's built-in prior: candidates trained for the same wall-clock on
FER2013's training faces and scored on PublicTest (validation) after every round.

``python -m experiments.study_prior --data ../shared/data/fer2013 --minutes 7 --out DIR [NAME ...]``
trains each named candidate (all by default) on both cores with the time-fitted schedule
(``fer_core.train.fit(seconds=...)``) and writes ``DIR/NAME.json``: the config, its FLOPs per face,
faces per second, every round's validation accuracy and macro-F1, and the last network's
validation figures with the mirror averaged in. The test split is never read.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from fer_core import (TrainConfig, build_predictor, evaluate_predictions, fit, flops_per_face, load, make_splits,
                      predict_proba)

BASE = dict(normalize="standardize", padding="same", rotation=0.0, shift=0.0, shear=0.0, zoom=0.0, flip=False,
            round_images=8192, epochs=400, learning_rate=1e-3, l2=1e-6)
LIGHT_AUG = dict(rotation=10.0, shift=0.1, zoom=0.1, flip=True)
CANDIDATES = {
    # the one-hour search's winner: the seed's network, no augmentation
    "seed_noaug": dict(BASE, padding="valid"),
    "seed_flip": dict(BASE, padding="valid", flip=True),
    # the two-hour search's best on PublicTest: 4 blocks of one 5x5 convolution with batch norm
    "bn4_k5": dict(BASE, conv_blocks=4, kernel_size=5, batch_norm=True, batch_size=64),
    # the mini-Xception of Arriaga et al. (the `fer` package's), as the space builds it
    "xception": dict(BASE, **LIGHT_AUG, conv_blocks=5, base_filters=8, convs_per_block=2, residual=True,
                     separable=True, batch_norm=True, head="gap", dense_units=64, schedule="cosine"),
    # a VGG-style net with batch norm (Khaireddin & Chen 2021's family, narrower)
    "vgg_bn": dict(BASE, **LIGHT_AUG, conv_blocks=3, convs_per_block=2, batch_norm=True, conv_dropout=0.2,
                   dense_units=256, dense_dropout=0.4, batch_size=64, schedule="cosine"),
    "seed_noaug_balanced": dict(BASE, padding="valid", class_weight="balanced"),
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="experiments.study_prior")
    parser.add_argument("--data", required=True)
    parser.add_argument("--minutes", type=float, default=7.0)
    parser.add_argument("--out", required=True)
    parser.add_argument("names", nargs="*")
    args = parser.parse_args()
    splits = make_splits(load(args.data), "usage")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in args.names or list(CANDIDATES):
        config = TrainConfig.from_dict(CANDIDATES[name])
        began = time.perf_counter()
        model, history = fit(config, splits.train, splits.val, threads=2, seconds=args.minutes * 60)
        seconds = time.perf_counter() - began
        mirrored = predict_proba(build_predictor([model], mirror=True), splits.val.images)
        val = evaluate_predictions(splits.val.labels, mirrored.argmax(axis=1), splits.val.class_names)
        faces = len(history) * config.round_images
        row = {"name": name, "config": config.to_dict(), "flops_per_face": flops_per_face(config),
               "params": model.count_params(), "rounds": len(history), "seconds": seconds,
               "faces_per_s": faces / sum(r["train_seconds"] for r in history),
               "history": history, "val_mirror": {k: val[k] for k in ("accuracy", "macro_f1", "balanced_accuracy",
                                                                        "per_class")}}
        (out / f"{name}.json").write_text(json.dumps(row, indent=1, default=float))
        print(f"{name}: {len(history)} rounds in {seconds:.0f} s, {row['faces_per_s']:.0f} faces/s, "
              f"{row['flops_per_face'] / 1e6:.1f} MFLOPs/face; PublicTest last {history[-1]['val_accuracy']:.3f} "
              f"/ {history[-1]['val_macro_f1']:.3f}, with mirror {val['accuracy']:.3f} / {val['macro_f1']:.3f}",
              flush=True)


if __name__ == "__main__":
    main()
