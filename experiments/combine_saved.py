"""Score ways of combining the networks that ``experiments.final_recipe --save`` kept.

    python -m experiments.final_recipe runs/NAME/report.json --scales 3 --folds 3 \\
        --variant eq:normalize=equalize --save eq.json
    python -m experiments.combine_saved eq.json [eq2.json ...]

For each file (one scale; its configs in the run's order, best first) it scores, on the
faces the networks were scored on (out-of-fold when the file came from ``--folds``):

- ``VARIANT top-k``: the k best configs trained one way, averaged (what ``search.run``
  builds with one ``--final-inputs`` normalization);
- ``pooled top-k``: the k best configs trained every way, all 2k (or more) networks averaged
  (``--final-inputs`` with two normalizations);
- ``alternating top-k``: the k best configs, the first trained the first way, the second
  the second way, and so on: as many networks as one way, so as much training.

Accuracy and macro-F1 are means over the file's parts (folds). Prints one table per file
and, with several files, their means.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from fer_core.errors import ConfigError, run_cli


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m experiments.combine_saved", description=__doc__.split("\n")[0])
    p.add_argument("saved", nargs="+", help="files written by experiments.final_recipe --save")
    return p.parse_args(argv)


def load_saved(path: Path) -> dict:
    try:
        saved = json.loads(path.read_text())
        labels, part = np.array(saved["labels"]), np.array(saved["part"])
        networks = saved["networks"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a file written by experiments.final_recipe --save ({exc})") from None
    scales = {n["scale"] for n in networks}
    if len(scales) != 1:
        raise ConfigError(f"{path}: holds scales {sorted(scales)}; expected one (run final_recipe with one --scales)")
    variants = list(dict.fromkeys(n["variant"] for n in networks))
    configs = list(dict.fromkeys(n["trial_id"] for n in networks))
    by_key = {}
    for n in networks:
        if n["copy"] == 0:
            by_key[(n["trial_id"], n["variant"])] = np.array(n["probabilities"], dtype=np.float64)
    return {"labels": labels, "part": part, "variants": variants, "configs": configs, "networks": by_key}


def score(saved: dict, keys: list[tuple[str, str]]) -> tuple[float, float]:
    """Mean accuracy and macro-F1 over the parts of the average of ``keys``' networks."""
    from sklearn.metrics import f1_score

    mean = np.mean([saved["networks"][key] for key in keys], axis=0)
    labels, part = saved["labels"], saved["part"]
    accuracy, f1 = [], []
    for p in sorted(set(part.tolist())):
        chosen = part == p
        predicted = mean[chosen].argmax(axis=1)
        accuracy.append(float((predicted == labels[chosen]).mean()))
        f1.append(float(f1_score(labels[chosen], predicted, average="macro", labels=sorted(set(labels.tolist())),
                                 zero_division=0)))
    return float(np.mean(accuracy)), float(np.mean(f1))


def ways(saved: dict) -> dict[str, list[tuple[str, str]]]:
    """The combinations to score, by name."""
    configs, variants = saved["configs"], saved["variants"]
    out = {}
    for k in range(1, len(configs) + 1):
        top = configs[:k]
        for variant in variants:
            out[f"{variant} top-{k}"] = [(c, variant) for c in top]
        if len(variants) > 1:
            out[f"pooled top-{k}"] = [(c, v) for c in top for v in variants]
            out[f"alternating top-{k}"] = [(c, variants[i % len(variants)]) for i, c in enumerate(top)]
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    files = [load_saved(Path(p)) for p in args.saved]
    tables = []
    for path, saved in zip(args.saved, files):
        table = {name: score(saved, keys) for name, keys in ways(saved).items()}
        tables.append(table)
        print(f"{path}: {len(saved['configs'])} configs x {', '.join(saved['variants'])}, "
              f"{len(saved['labels'])} faces scored")
        for name, (accuracy, f1) in table.items():
            print(f"  {name:>24} {accuracy:.3f} {f1:.3f}")
    if len(tables) > 1:
        common = [name for name in tables[0] if all(name in t for t in tables[1:])]
        print(f"mean over {len(tables)} files")
        for name in common:
            print(f"  {name:>24} {np.mean([t[name][0] for t in tables]):.3f} {np.mean([t[name][1] for t in tables]):.3f}")
    print(json.dumps({"files": args.saved, "tables": tables}))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="experiments.combine_saved"))
