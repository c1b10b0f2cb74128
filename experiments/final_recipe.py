"""How should the final members train? Compare recipes without the test split.

    python -m experiments.final_recipe runs/NAME/report.json --scales 1 2 --seed 43
    python -m experiments.final_recipe runs/NAME/report.json --scales 2 --folds 5 \\
        --variant flip:flip=true --variant mild:flip=true,rotation=10,shift=0.1,zoom=0.1

Takes a finished run's report, the run's ``--members`` best configs (as ``search.run``
picks them: by the confirmation's cross-validation where the run has one), and trains
each at ``--seed`` (pick one no trial used, so the configs' lucky draws do not favour
the search's own settings), for each scale times its trial's epochs
and for each variant: the config as found (``as-found``) and each ``--variant
NAME:FIELD=VALUE[,FIELD=VALUE...]``, the same config with those fields changed. With a
variant, a ``pooled`` row also scores every variant's networks averaged together (does a
second recipe add the diversity that a second copy does not?).

With ``--copies N`` each network trains N times, at seeds ``--seed`` to ``--seed + N - 1``:
the members' average then takes every copy, and is also reported one copy at a time (the
ensemble ``search.run`` builds), so the two say what training each config more than once
adds.

Each network, and the members' average, is scored with mirror test-time augmentation,
never on the test split. Without ``--folds`` the networks train on the run's training
part and are scored on its validation part: the faces the search picked its configs
on. With ``--folds K`` they are scored by K-fold cross-validation over train + validation
(by subject where the data has subjects, stratified by class): every network is trained K
times, and its figure is the mean over the folds, on about 5 times the faces, most of
them not the ones the configs were picked on. This is how ``search.run``'s default
``--final-epochs-scale`` was chosen.

Trainings run in parallel, one process with one TensorFlow thread per CPU. Prints one line
per training, one table, and as its last line one JSON object with all figures.
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

AS_FOUND = "as-found"
POOLED = "pooled"  # the row that averages every variant's networks together


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m experiments.final_recipe", description=__doc__.split("\n")[0])
    p.add_argument("report", help="a finished run's report.json")
    p.add_argument("--members", type=int, default=5, help="how many of the run's best configs (default 5)")
    p.add_argument("--scales", type=float, nargs="+", default=[1.0, 2.0], help="epoch scales to compare (default 1 2)")
    p.add_argument("--variant", action="append", default=[], metavar="NAME:FIELD=VALUE[,...]",
                   help="also train each config with these config fields changed (repeatable)")
    p.add_argument("--folds", type=int, default=0,
                   help="score by K-fold cross-validation over train + validation (default: train, then validation)")
    p.add_argument("--seed", type=int, default=43, help="training seed (default 43; the search trained at 42)")
    p.add_argument("--copies", type=int, default=1,
                   help="train each config this many times, at seeds --seed, --seed + 1, ...; the ensemble "
                        "averages all copies, and is also scored one copy at a time (default 1)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel trainings (default: CPUs)")
    p.add_argument("--save", default=None, metavar="FILE",
                   help="also write the figures and every network's scored class probabilities (4 decimals) to "
                        "this JSON file, to study other ways of combining the networks")
    p.add_argument("--data", default=None, help="the data set, if it moved since the run (default: the report's)")
    return p.parse_args(argv)


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    """``NAME:FIELD=VALUE[,FIELD=VALUE...]`` as (name, changes); fields are checked by the config."""
    name, _, body = text.partition(":")
    pairs = [item.partition("=") for item in body.split(",") if item.strip()]
    malformed = any(not k.strip() or not eq or not v.strip() for k, eq, v in pairs)
    if not name.strip() or name.strip() in (AS_FOUND, POOLED) or not pairs or malformed:
        raise ConfigError(f"--variant {text!r}: expected NAME:FIELD=VALUE[,FIELD=VALUE...] "
                          f"(NAME not {AS_FOUND!r} or {POOLED!r}), e.g. flip:flip=true,rotation=10")
    return name.strip(), {k.strip(): v.strip() for k, _, v in pairs}


def train_on_folds(configs: dict, parts: list, workers: int) -> dict:
    """Train every config on every (train, score) part and score it: ``{(key, fold): probabilities}``.

    ``search.run``'s own retrain (mirror test-time augmentation), in ``workers`` processes
    with one TensorFlow thread each; one log line per training.
    """
    from search.run import _retrain_task

    jobs = [(key, fold) for key in configs for fold in range(len(parts))]
    probabilities = {}
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_retrain_task, configs[key], *parts[fold], 1, True, False) for key, fold in jobs]
        for (key, fold), future in zip(jobs, futures):
            probabilities[(key, fold)] = future.result()["probabilities"]
            log.info("%s fold %d: accuracy %.3f", key, fold,
                     (probabilities[(key, fold)].argmax(1) == parts[fold][1].labels).mean())
    return probabilities


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    path = Path(args.report)
    try:
        report = json.loads(path.read_text())
        trials, data_source, split_method = report["trials"], args.data or report["data"], report["split"]
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"{path}: not a run's report.json ({exc.__class__.__name__}: {exc})") from None
    if args.members < 1 or args.workers < 1 or args.copies < 1 or any(s <= 0 for s in args.scales):
        raise ConfigError("--members, --workers and --copies must be >= 1 and every --scales value > 0")
    if args.folds == 1 or args.folds < 0:
        raise ConfigError(f"--folds {args.folds}: expected 2 or more (or 0: train, then validation)")
    if args.save and not Path(args.save).resolve().parent.is_dir():
        raise ConfigError(f"--save {args.save}: its folder does not exist")
    variants = {AS_FOUND: {}}
    for text in args.variant:
        name, changes = parse_variant(text)
        if name in variants:
            raise ConfigError(f"--variant {text!r}: the name {name!r} is given twice")
        variants[name] = changes

    from fer_core.config import TrainConfig
    from fer_core.data import load
    from fer_core.evaluate import evaluate_predictions
    from search.confirm import folds_of
    from search.run import final_config, make_splits, pick_ensemble, pick_members

    # as search.run picks its members: by the confirmation's cross-validated ranking where
    # the run has one, then by the search's own figures
    confirmation = report.get("confirmation") or {}
    by_id = {t["trial_id"]: t for t in trials}
    ranked = [by_id[row["trial_id"]] for row in confirmation.get("trials") or []
              if not confirmation.get("skipped") and row.get("cv_accuracy") is not None and row["trial_id"] in by_id]
    members = pick_members(trials, ranked, args.members) if ranked else pick_ensemble(trials, args.members)
    if not members:
        raise ConfigError(f"{path}: no finished trial to take a config from")
    configs = {}
    for name, changes in variants.items():
        for trial in members:
            for scale in args.scales:
                for copy in range(args.copies):
                    config = dataclasses.replace(final_config(trial["config"], scale), seed=args.seed + copy).to_dict()
                    try:
                        configs[(trial["trial_id"], scale, name, copy)] = TrainConfig.from_dict(
                            {**config, **changes}).to_dict()
                    except ConfigError as exc:
                        raise ConfigError(f"--variant {name}: {exc}") from None
    splits = make_splits(load(data_source), split_method)
    if args.folds:
        rest = splits.train.concat(splits.val)
        try:
            parts = [(rest.subset(a), rest.subset(b)) for a, b in folds_of(rest, args.folds, args.seed)]
        except ConfigError as exc:
            raise ConfigError(f"--folds {args.folds}: {exc}") from None
        scored_on = f"{args.folds}-fold cross-validation over {len(rest)} train + validation faces"
    else:
        parts = [(splits.train, splits.val)]
        scored_on = f"{len(splits.val)} validation faces, trained on {len(splits.train)} training faces"
    probabilities = train_on_folds(configs, parts, args.workers)
    accuracy = {(key, fold): float((p.argmax(1) == parts[fold][1].labels).mean())
                for (key, fold), p in probabilities.items()}

    def ensemble(keys: list) -> list[dict]:
        return [evaluate_predictions(part[1].labels,
                                     np.mean([probabilities[(key, f)] for key in keys], axis=0).argmax(1),
                                     part[1].class_names) for f, part in enumerate(parts)]

    rows = []
    for name in variants:
        for scale in args.scales:
            copies = range(args.copies)
            member_acc = {t["trial_id"]: float(np.mean([accuracy[((t["trial_id"], scale, name, c), f)]
                                                        for f in range(len(parts)) for c in copies]))
                          for t in members}

            every = ensemble([(t["trial_id"], scale, name, c) for t in members for c in copies])
            one_copy = [ensemble([(t["trial_id"], scale, name, c) for t in members]) for c in copies]
            rows.append({"scale": scale, "variant": name, "changes": variants[name], "members": member_acc,
                         "epochs": {t["trial_id"]: configs[(t["trial_id"], scale, name, 0)]["epochs"]
                                    for t in members},
                         "member_mean": float(np.mean(list(member_acc.values()))),
                         "ensemble_accuracy": float(np.mean([e["accuracy"] for e in every])),
                         "ensemble_macro_f1": float(np.mean([e["macro_f1"] for e in every])),
                         "ensemble_by_fold": [e["accuracy"] for e in every],
                         # the ensemble of one copy of each config, averaged over the copies
                         "one_copy_ensemble_accuracy": float(np.mean([e["accuracy"] for c in one_copy for e in c])),
                         "one_copy_ensemble_macro_f1": float(np.mean([e["macro_f1"] for c in one_copy for e in c]))})
    for scale in args.scales if len(variants) > 1 else []:
        # every variant's networks in one average: does a second recipe add diversity?
        pooled = ensemble([(t["trial_id"], scale, name, c) for name in variants for t in members
                           for c in range(args.copies)])
        rows.append({"scale": scale, "variant": POOLED, "changes": {}, "members": {}, "epochs": {},
                     "member_mean": float("nan"),
                     "ensemble_accuracy": float(np.mean([e["accuracy"] for e in pooled])),
                     "ensemble_macro_f1": float(np.mean([e["macro_f1"] for e in pooled])),
                     "ensemble_by_fold": [e["accuracy"] for e in pooled],
                     "one_copy_ensemble_accuracy": float("nan"), "one_copy_ensemble_macro_f1": float("nan")})
    seeds = f"seed {args.seed}" if args.copies == 1 else f"seeds {args.seed}-{args.seed + args.copies - 1}"
    print(f"{len(members)} best configs of {path}, trained at {seeds}, scored on {scored_on} "
          f"({split_method} split)")
    print(f"{'scale':>6} {'variant':>12} {'member mean':>12} {'ensemble':>9} {'ens. F1':>8} {'one copy':>9}  members")
    for row in rows:
        print(f"{row['scale']:>6g} {row['variant']:>12} {row['member_mean']:>12.3f} {row['ensemble_accuracy']:>9.3f} "
              f"{row['ensemble_macro_f1']:>8.3f} {row['one_copy_ensemble_accuracy']:>9.3f}  "
              + " ".join(f"{k}:{v:.3f}" for k, v in row["members"].items()))
    figures = {"report": str(path), "seed": args.seed, "copies": args.copies, "folds": args.folds,
               "scored_on": scored_on, "n_scored": sum(len(p[1]) for p in parts), "rows": rows}
    if args.save:
        # the scored faces of every part, in part order: labels, part index, and each network's probabilities
        saved = {**figures, "labels": [int(v) for part in parts for v in part[1].labels],
                 "part": [f for f, part in enumerate(parts) for _ in range(len(part[1]))],
                 "networks": [{"trial_id": trial_id, "scale": scale, "variant": name, "copy": copy,
                               "probabilities": np.round(np.concatenate(
                                   [probabilities[((trial_id, scale, name, copy), f)] for f in range(len(parts))]),
                                   4).tolist()}
                              for (trial_id, scale, name, copy) in configs]}
        Path(args.save).write_text(json.dumps(saved))
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="experiments.final_recipe"))
