"""Compare FER Tune with KerasTuner, Optuna and Ray Tune's random search on equal terms.

    python -m experiments.compare_tuners --data ../shared/data/ck48 --split subject --budget 6m \\
        --seeds 42 43 --max-epochs 20 [--retrains 3] [--output DIR] [--tools fertune,kerastuner,optuna,ray_random] \\
        [--fertune-args='--confirm 0 --cpus-per-trial 2'] [--train-faces N] [--stop-at-budget]
    python -m experiments.compare_tuners --merge A/compare.json B/compare.json [--output DIR]

The protocol. The data set is loaded and split once (``fer_core.splits.make_splits``): the test
split is held out by the fixed protocol seed and no tool sees it; every tool searches on
the same train and validation parts (``--train-faces N``: N of the training faces, drawn
once, stratified, for a data set as large as FER2013), over the same space
(``search.tuning.space.define_space``, as far as each tool can express it), for each ``--seeds`` seed, with the same wall-clock
``--budget``: after the budget no new trial starts, trials already running finish (with
``--stop-at-budget`` they stop at the end of their epoch, in every arm), and the actual
wall-clock is recorded. An arm's clock starts when its tool is set up (the data
loaded and, for the Ray arms, the local cluster started) and stops when its search returns.

The arms, one per tool, are in ``experiments/tuner_arms.py``, side by side, so that what each
tool is given can be checked there line by line.

For every finished trial the harness records when it finished (seconds since the arm
started) and its last reported validation accuracy; from these: the tool's own winner
and its validation accuracy, the trials completed (stopped early included; for
KerasTuner, configurations, since Hyperband runs a promoted configuration as a new trial),
the time at which the best validation accuracy so far first reached 95% of the arm's
final best, and the best validation accuracy of the trials finished when the budget ran
out (the same cut for every tool: a tool without early stopping often finds its winner
in a trial that was let run past the budget). Each winner is then retrained on train +
validation with its full epoch budget and tested on the held-out split by one function for every tool
(``search.final.tasks.train_and_score``), one at a time, outside every budget: ``--retrains`` times
(default 3), at the config's training seed and the next ones, and the table gives the mean
test figures and the range of test accuracy. One training of one winner moves by several
points on a few hundred test faces, which would otherwise decide the test column.

With ``--final-models`` each arm also builds and tests a final model as ``search.run`` builds
FER Tune's (``search.final.retrain.retrain_members``: the 5 best configs at three times their epochs on
train + validation, each checked for learning, their probabilities averaged with mirror
test-time augmentation; ``--ensemble`` and ``--final-epochs-scale`` in ``--fertune-args`` change
it for every tool), by the same code for every tool; what differs is which configs:
FER Tune's are ranked by its confirmation, every other tool's by validation accuracy
(``search.final.ranking.pick_ensemble``). The winner's column is what a user of the tool gets from
its best trial; this one is what FER Tune's final stage makes of each tool's trials.

It prints one markdown table (one row per seed and tool, then each tool's mean over the
seeds), writes it to ``OUTPUT/compare.md`` and everything to ``OUTPUT/compare.json``
(rewritten after every arm), and prints as its last line one JSON object. Bad arguments
print one line and exit with status 2; an arm that crashes is recorded with its error,
the others still run, and the exit status is 1.

``--merge`` searches nothing: it tables together the compare.json files of comparisons run
with the same protocol (data, split, budget, epochs), e.g. one arm re-run with ``--seeds 43
--tools ray_random`` after the machine restarted during it, and writes the merged
compare.md and compare.json to ``--output``. A compare.json from before ``--retrains`` counts as one retrain.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import logging
import math
import os
import shlex
import sys
import time
import traceback
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

import numpy as np

from fer_core import SPLITS, ConfigError, Splits, evaluate_predictions, load, make_splits, run_cli
from fer_core.staging import write_atomic
from search import (DEFAULT_MAX_EPOCHS, TrialRecord, build_parser, check_writable,
                    final_networks, output_path, parse_duration, pick_ensemble, retrain_members, run_settings,
                    start_ray, train_and_score)
from search import check_args as check_run_args
from experiments.tuner_arms import ARMS, SCORED, THREADS, ArmResult, Context, TrialResult, finite

log = logging.getLogger("experiments.compare_tuners")

TOOLS = ("fertune", "kerastuner", "optuna", "ray_random")
# search.run options the harness sets for the fertune arm: --fertune-args cannot change them
HARNESS_FLAGS = ("--trials", "--time-budget", "--max-epochs", "--seed", "--data", "--split", "--output", "--name",
                 "--resume", "--address")
# --final-models, in its help and under the table
FINAL_MODEL_TEXT = ("the arm's final model as search.run builds FER Tune's (its final stage, as --fertune-args set "
                    "it for every arm: by default the 5 best configs at three times their epochs on train + "
                    "validation, each checked for learning, averaged with mirror test-time augmentation), FER "
                    "Tune's configs ranked by its confirmation, the other tools' by validation accuracy")
SHARE_OF_BEST = 0.95  # "time to 95%": when the best so far first reached this share of the final best
DEFAULT_RETRAINS = 3


# ----------------------------------------------------------------------------- command line

class _Parser(argparse.ArgumentParser):
    """argparse whose mistakes are one line (through ``run_cli``), not usage plus a line."""

    def error(self, message: str):  # type: ignore[override]
        raise ConfigError(message)


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    p = _Parser(prog="python -m experiments.compare_tuners", description=__doc__.split("\n")[0])
    p.add_argument("--data", help="CSV file, folder of class folders, or synthetic[:N] (required unless --merge)")
    p.add_argument("--split", default="auto", help=f"held-out test split: {', '.join(SPLITS)} (default auto)")
    p.add_argument("--budget", help="wall-clock budget of each arm, e.g. 6m, 90s (required unless --merge)")
    p.add_argument("--seeds", type=int, nargs="+", default=[42], help="sampler seeds, one search per tool each")
    p.add_argument("--max-epochs", type=int, default=DEFAULT_MAX_EPOCHS,
                   help=f"epoch budget of one trial (default {DEFAULT_MAX_EPOCHS}, as search.run)")
    p.add_argument("--retrains", type=int, default=DEFAULT_RETRAINS,
                   help=f"trainings of each winner for its test figures, at successive seeds (default {DEFAULT_RETRAINS})")
    p.add_argument("--train-faces", type=int, default=None, metavar="N",
                   help="every arm searches and retrains on N of the training faces, drawn once, stratified by "
                        "class (validation and test stay whole): for a large data set in a session's time")
    p.add_argument("--stop-at-budget", action="store_true",
                   help="trials still running when the budget ends stop at the end of their epoch, in every arm "
                        "(as FER Tune's do anyway), instead of finishing: for trials that take minutes")
    p.add_argument("--tools", default=",".join(TOOLS), help=f"comma-separated, of {', '.join(TOOLS)} (default all)")
    p.add_argument("--output", default=None, help="new or empty folder (default runs/compare-TIMESTAMP)")
    p.add_argument("--fertune-args", default="", metavar="OPTIONS",
                   help="more search.run options for the fertune arm, one string given with =, e.g. "
                        "--fertune-args='--confirm 0 --cpus-per-trial 2' (not those the harness sets: "
                        + ", ".join(HARNESS_FLAGS) + ")")
    p.add_argument("--final-models", action="store_true",
                   help="also build and test " + FINAL_MODEL_TEXT)
    p.add_argument("--merge", nargs="+", metavar="COMPARE_JSON", default=None,
                   help="search nothing: table together earlier comparisons' compare.json files of the same "
                        "protocol (data, split, budget, epochs), e.g. an arm re-run after an interruption")
    return p.parse_args(argv)


def check_args(args: argparse.Namespace) -> tuple[list[str], float, Path, tuple[str, ...]]:
    """The tools, the budget in seconds, the output folder and the fertune arm's extra
    search.run arguments; one-line errors otherwise."""
    for flag, value in (("--data", args.data), ("--budget", args.budget)):
        if value is None:
            raise ConfigError(f"{flag} is required (unless --merge)")
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = [t for t in tools if t not in TOOLS]
    if unknown or not tools:
        raise ConfigError(f"--tools {args.tools!r}: unknown tool(s) {', '.join(unknown) or '(none given)'}; "
                          f"expected some of {', '.join(TOOLS)}")
    if len(set(tools)) != len(tools):
        raise ConfigError(f"--tools {args.tools!r}: a tool is named twice")
    if "kerastuner" in tools and importlib.util.find_spec("keras_tuner") is None:
        raise ConfigError("--tools kerastuner: keras_tuner is not installed (pip install keras-tuner, "
                          "or pip install -e '.[dev]')")
    try:
        budget_s = parse_duration(args.budget)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("--time-budget", "--budget")) from None
    if args.max_epochs < 1:
        raise ConfigError(f"--max-epochs {args.max_epochs}: expected an integer >= 1")
    if args.retrains < 1:
        raise ConfigError(f"--retrains {args.retrains}: expected an integer >= 1")
    if args.train_faces is not None and args.train_faces < 1:
        raise ConfigError(f"--train-faces {args.train_faces}: expected an integer >= 1")
    if args.split not in SPLITS:
        raise ConfigError(f"--split {args.split!r}: expected one of {', '.join(SPLITS)}")
    if len(set(args.seeds)) != len(args.seeds):
        raise ConfigError(f"--seeds {' '.join(map(str, args.seeds))}: a seed is given twice")
    if args.fertune_args.strip() and "fertune" not in tools:
        raise ConfigError(f"--fertune-args {args.fertune_args!r}: no fertune arm in --tools {args.tools!r} "
                          "to pass them to")
    extra = fertune_args_of(args)
    return tools, float(budget_s), _output_dir(args.output), extra


def fertune_args_of(args: argparse.Namespace) -> tuple[str, ...]:
    """``--fertune-args`` as search.run's argument list, checked by search.run itself."""
    text = args.fertune_args
    try:
        extra = tuple(shlex.split(text))
    except ValueError as exc:
        raise ConfigError(f"--fertune-args {text!r}: {exc}") from None
    taken = [flag for flag in (t.split("=")[0] for t in extra) if flag in HARNESS_FLAGS]
    if taken:
        verb = "is" if len(taken) == 1 else "are"
        raise ConfigError(f"--fertune-args {text!r}: {', '.join(taken)} {verb} set by the harness for every arm")
    try:
        parsed = build_parser(_Parser).parse_args(["--data", "synthetic", *extra])
        check_run_args(parsed)
        run_settings(parsed)
    except ConfigError as exc:
        raise ConfigError(f"--fertune-args {text!r}: {exc}") from None
    return extra


def _output_dir(text: Optional[str]) -> Path:
    """A new or empty, writable folder: arms must not find an earlier comparison's files."""
    output = output_path(text or f"runs/compare-{datetime.now():%Y%m%d-%H%M%S}")
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise ConfigError(f"--output {text!r}: {output} exists and is not an empty folder")
    check_writable(output, text)
    return output


# ----------------------------------------------------------------------------- scoring

def time_to_share(trials: list[TrialResult], share: float = SHARE_OF_BEST) -> Optional[float]:
    """When the best validation accuracy so far first reached ``share`` of the arm's final best."""
    scored = sorted((t for t in trials if t.scored), key=lambda t: t.finished_s)
    if not scored:
        return None
    target = share * max(t.val_accuracy for t in scored)
    best = -math.inf
    for trial in scored:
        best = max(best, trial.val_accuracy)
        if best >= target - 1e-12:
            return trial.finished_s
    return None  # unreachable: the final best reaches any share of itself


def retrain_and_test(config: dict[str, Any], splits: Splits) -> dict[str, Any]:
    """The winner on train + validation, tested on the held-out split: the same code for every tool."""
    import keras

    keras.backend.clear_session()
    return train_and_score(config, splits.train.concat(splits.val), splits.test, THREADS)["metrics"]


def best_by(trials: list[TrialResult], seconds: float) -> Optional[float]:
    """The best validation accuracy of the trials that finished within ``seconds`` of the arm's start.

    The tool's own winner may have finished after the budget (running trials are let finish);
    this is what the arm had found when the budget ran out, the same cut for every tool.
    """
    within = [t.val_accuracy for t in trials if t.scored and t.finished_s <= seconds]
    return max(within) if within else None


def arm_row(arm: ArmResult, tests: list[dict[str, Any]], retrain_s: Optional[float],
            budget_s: float) -> dict[str, Any]:
    """One (seed, tool) row of the table, with everything behind it for compare.json.

    ``tests`` holds the test metrics of each retrain of the winner (none without a winner):
    the row's test figures are their means, with the range of their accuracies.
    """
    configurations = [t for t in arm.trials if t.status in SCORED and t.continues is None]
    accuracies = [t["accuracy"] for t in tests]
    return {
        "seed": arm.seed, "tool": arm.tool,
        "best_val_accuracy": arm.winner_val_accuracy,
        "test_accuracy": float(np.mean(accuracies)) if tests else None,
        "test_macro_f1": float(np.mean([t["macro_f1"] for t in tests])) if tests else None,
        "test_accuracy_range": [min(accuracies), max(accuracies)] if tests else None,
        "trials_completed": len(configurations),
        "trials_failed": sum(t.status == "failed" for t in arm.trials),
        "search_wall_clock_s": round(arm.wall_clock_s, 2),
        "time_to_95_s": _round(time_to_share(arm.trials)),
        "best_val_by_budget": best_by(arm.trials, budget_s),
        "retrain_s": _round(retrain_s),
        "winner_trial": arm.winner_id, "winner_config": arm.winner_config,
        "tests": tests, "notes": arm.notes, "error": None,
        "trials": [asdict(t) for t in arm.trials],
    }


def failed_row(tool: str, seed: int, error: str) -> dict[str, Any]:
    return {"seed": seed, "tool": tool, "best_val_accuracy": None, "test_accuracy": None, "test_macro_f1": None,
            "trials_completed": 0, "trials_failed": 0, "search_wall_clock_s": None, "time_to_95_s": None,
            "best_val_by_budget": None,
            "test_accuracy_range": None,
            "retrain_s": None, "winner_trial": None, "winner_config": None, "tests": [], "notes": {},
            "error": error, "trials": []}


TABLE = (("best_val_accuracy", "best val acc", "pct"), ("best_val_by_budget", "best val by budget", "pct"),
         ("test_accuracy", "test acc", "pct"), ("test_accuracy_range", "test acc range", "range"),
         ("test_macro_f1", "test macro-F1", "f3"), ("trials_completed", "trials", "n"),
         ("search_wall_clock_s", "search s", "s"), ("time_to_95_s", "time to 95% s", "s"))
# --final-models: tabled when some row has them
FINAL_TABLE = (("final_test_accuracy", "final model test acc", "pct"),
               ("final_test_macro_f1", "final model macro-F1", "f3"))


def table_columns(rows: list[dict[str, Any]]) -> tuple[tuple[str, str, str], ...]:
    """The table's columns: :data:`TABLE`, and :data:`FINAL_TABLE` where a row has a final model."""
    return TABLE + (FINAL_TABLE if any("final_test_accuracy" in r for r in rows) else ())


def tool_means(rows: list[dict[str, Any]], tools: list[str]) -> list[dict[str, Any]]:
    """Each tool's mean over the seeds of every table column (over the seeds that have it)."""
    means = []
    for tool in tools:
        mine = [r for r in rows if r["tool"] == tool]
        mean = {"seed": "mean", "tool": tool, "seeds": len(mine)}
        for key, _, _ in table_columns(rows):
            values = [r.get(key) for r in mine if finite(r.get(key))]
            mean[key] = float(np.mean(values)) if values else None
        means.append(mean)
    return means


def render_table(rows: list[dict[str, Any]], means: list[dict[str, Any]]) -> str:
    columns = table_columns(rows)
    header = "| seed | tool | " + " | ".join(title for _, title, _ in columns) + " |"
    lines = [header, "|" + "---|" * (len(columns) + 2)]
    for row in [*rows, *means]:
        cells = [_cell(row.get(key), kind) for key, _, kind in columns]
        tool = row["tool"] + (" (error)" if row.get("error") else "")
        lines.append(f"| {row['seed']} | {tool} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_markdown(meta: dict[str, Any], table: str) -> str:
    return "\n".join([
        "# Tuner comparison", "",
        f"Data `{meta['data']}`, split **{meta['split']}** ({meta['n_train']} train, {meta['n_val']} validation, "
        f"{meta['n_test']} held-out test); budget {meta['budget_s']:.0f} s of wall-clock per arm; "
        f"{meta['max_epochs']} epochs at most per trial; seeds {', '.join(map(str, meta['seeds']))}"
        + ("; trials running at the budget's end stopped at the end of their epoch" if meta.get("stop_at_budget")
           else "")
        + (f"; FER Tune with `{shlex.join(meta['fertune_args'])}`" if meta.get("fertune_args") else "") + ".", "",
        "Best val acc: the tool's own winner, picked on validation. Test: that winner retrained on "
        f"train + validation and tested on the held-out split, by the same code for every tool, "
        f"{meta.get('retrains', 1)} time(s) at successive training seeds: the mean, and the range of "
        "accuracy (the mean rows average the seeds' means). Trials: "
        "completed or stopped early (KerasTuner: configurations). Time to 95%: when the best validation "
        "accuracy so far first reached 95% of the arm's final best. Best val by budget: the best validation "
        "accuracy among the trials that had finished when the budget ran out"
        + (" (trials running then stopped at their epoch's end)." if meta.get("stop_at_budget") else
           " (trials running then are let finish, so the tool's own winner may come later).")
        + (f" Final model: {FINAL_MODEL_TEXT}; trained once, outside every budget." if meta.get("final_models")
           else ""), "",
        table, ""])


def _cell(value: Any, kind: str) -> str:
    if kind == "range":
        ok = isinstance(value, (list, tuple)) and len(value) == 2 and all(map(finite, value))
        return f"{100 * value[0]:.1f}-{100 * value[1]:.1f}%" if ok else "n/a"
    if not finite(value):
        return "n/a"
    return {"pct": f"{100 * value:.1f}%", "f3": f"{value:.3f}", "n": f"{value:g}", "s": f"{value:.1f}"}[kind]


# ----------------------------------------------------------------------------- main

def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    if args.merge is not None:
        return merge(args)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    tools, budget_s, output, fertune_args = check_args(args)
    data = load(args.data)
    splits = make_splits(data, args.split)
    if args.train_faces is not None:
        splits = fewer_train_faces(splits, args.train_faces)
    ctx = Context(args.data, args.split, splits, args.max_epochs, args.budget, budget_s, args.retrains,
                  fertune_args, args.final_models, args.stop_at_budget)
    output.mkdir(parents=True, exist_ok=True)
    log.info("data: %s; split %s: %d train, %d validation, %d test", data.describe(), splits.method,
             len(splits.train), len(splits.val), len(splits.test))
    from fer_core import configure_tensorflow

    configure_tensorflow(THREADS)  # before anything imports Keras in this process
    meta = {"data": data.source, "split": splits.method, "n_train": len(splits.train), "n_val": len(splits.val),
            "n_test": len(splits.test), "budget_s": budget_s, "max_epochs": args.max_epochs,
            "retrains": args.retrains, "seeds": args.seeds, "final_models": args.final_models,
            "stop_at_budget": args.stop_at_budget,
            "tools": tools, "fertune_args": list(ctx.fertune_args), "threads": THREADS, "cpus": os.cpu_count(),
            "share_of_best": SHARE_OF_BEST}
    rows: list[dict[str, Any]] = []
    for seed in args.seeds:
        for tool in tools:
            rows.append(run_arm(tool, ctx, seed, output / f"seed{seed}" / tool))
            write_results(output, meta, rows, tools)
    return print_results(output, rows, tools)


def fewer_train_faces(splits: Splits, n: int) -> Splits:
    """``splits`` with ``n`` of its training faces, stratified by class and drawn once at the
    protocol's seed, so that every arm and every seed search the same ones."""
    import dataclasses

    from sklearn.model_selection import train_test_split

    from fer_core import SPLIT_SEED

    if n >= len(splits.train):
        raise ConfigError(f"--train-faces {n}: expected fewer than the {len(splits.train)} training faces")
    try:
        keep, _ = train_test_split(np.arange(len(splits.train)), train_size=n, stratify=splits.train.labels,
                                   random_state=SPLIT_SEED)
    except ValueError as exc:  # fewer faces than classes, or a class of one face
        raise ConfigError(f"--train-faces {n}: {exc}") from None
    return dataclasses.replace(splits, train=splits.train.subset(np.sort(keep)))


def print_results(output: Path, rows: list[dict[str, Any]], tools: list[str]) -> int:
    """The table, then the one-line JSON summary, on stdout; the exit status (1 if an arm failed)."""
    means = tool_means(rows, tools)
    print(render_table(rows, means) + "\n")
    print(json.dumps({"output": str(output), "rows": [_summary(r) for r in rows],
                      "means": means}, default=_plain))
    return 1 if any(r["error"] for r in rows) else 0


PROTOCOL = ("data", "split", "n_train", "n_val", "n_test", "budget_s", "max_epochs", "retrains", "stop_at_budget")
PROTOCOL_DEFAULTS = {"retrains": 1, "stop_at_budget": False}  # what a compare.json from before the key did


def merge(args: argparse.Namespace) -> int:
    """One table from earlier comparisons' compare.json files; nothing is searched or trained."""
    searching = [flag for flag, value in (("--data", args.data), ("--budget", args.budget)) if value is not None]
    if searching:
        raise ConfigError(f"--merge tables finished comparisons: {' and '.join(searching)} cannot go with it")
    output = _output_dir(args.output)
    meta: Optional[dict[str, Any]] = None
    rows: dict[tuple[int, str], dict[str, Any]] = {}
    where: dict[tuple[int, str], str] = {}
    fertune_from: Optional[tuple[list[str], str]] = None  # FER Tune's --fertune-args, and the file they came from
    for name in args.merge:
        report = _read_comparison(name)
        report = {**PROTOCOL_DEFAULTS, **report}
        if meta is None:
            meta = {k: v for k, v in report.items() if k not in ("rows", "means")}
        for key in PROTOCOL:
            if report[key] != meta[key]:
                raise ConfigError(f"--merge {name}: {key} is {report[key]!r}, not {meta[key]!r} as in {args.merge[0]}")
        if any(row["tool"] == "fertune" for row in report["rows"]):  # one FER Tune per table
            fertune_args = list(report.get("fertune_args", []))
            if fertune_from is not None and fertune_args != fertune_from[0]:
                raise ConfigError(f"--merge {name}: FER Tune ran with --fertune-args {shlex.join(fertune_args)!r}, "
                                  f"not {shlex.join(fertune_from[0])!r} as in {fertune_from[1]}")
            fertune_from = fertune_from or (fertune_args, name)
        for row in report["rows"]:
            arm = (row["seed"], row["tool"])
            if arm in rows:
                raise ConfigError(f"--merge {name}: seed {arm[0]}, {arm[1]} is also in {where[arm]}")
            if "best_val_by_budget" not in row:  # a comparison from before the column: its trials have it
                trials = [TrialResult(**t) for t in row["trials"]]
                row = {**row, "best_val_by_budget": best_by(trials, report["budget_s"])}
            if "test_accuracy_range" not in row:  # from before --retrains: its one retrain
                accuracy = row.get("test_accuracy")
                row = {**row, "test_accuracy_range": [accuracy, accuracy] if finite(accuracy) else None}
            rows[arm], where[arm] = row, name
    assert meta is not None  # argparse: --merge takes one file at least
    tools = [t for t in TOOLS if any(tool == t for _, tool in rows)]
    ordered = [rows[arm] for arm in sorted(rows, key=lambda a: (a[0], TOOLS.index(a[1])))]
    meta = {**meta, "seeds": sorted({seed for seed, _ in rows}), "tools": tools, "merged": list(args.merge),
            "fertune_args": fertune_from[0] if fertune_from else []}
    output.mkdir(parents=True, exist_ok=True)
    write_results(output, meta, ordered, tools)
    return print_results(output, ordered, tools)


def _read_comparison(name: str) -> dict[str, Any]:
    try:
        report = json.loads(Path(name).read_text())
    except FileNotFoundError:
        raise ConfigError(f"--merge {name}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--merge {name}: not readable JSON ({exc})") from None
    missing = [k for k in (*PROTOCOL, "rows") if not isinstance(report, dict)
               or (k not in report and k not in PROTOCOL_DEFAULTS)]
    if missing:
        raise ConfigError(f"--merge {name}: not a compare.json (no {', '.join(missing)})")
    for row in report["rows"]:
        if not isinstance(row, dict) or not {"seed", "tool", "trials", "error"} <= set(row) \
                or row["tool"] not in TOOLS:
            raise ConfigError(f"--merge {name}: a row is not a comparison arm ({str(row)[:80]})")
    return report


def run_arm(tool: str, ctx: Context, seed: int, arm_dir: Path) -> dict[str, Any]:
    """Search with one tool (progress to stderr), then retrain and test its winner."""
    import keras

    log.info("seed %d, %s: searching for %.0f s", seed, tool, ctx.budget_s)
    arm_dir.parent.mkdir(parents=True, exist_ok=True)  # each tool makes its own folder (FER Tune insists)
    try:
        with contextlib.redirect_stdout(sys.stderr):  # Tune's and the tools' progress: stdout is the table
            arm = ARMS[tool](ctx, seed, arm_dir)
    except Exception:  # noqa: BLE001 - one tool's crash must not lose the other arms
        error = traceback.format_exc()
        log.error("seed %d, %s: the search failed:\n%s", seed, tool, error)
        return failed_row(tool, seed, error.strip().splitlines()[-1])
    finally:
        keras.backend.clear_session()
    log.info("seed %d, %s: %d trials in %.1f s, best val accuracy %s; retraining its winner",
             seed, tool, len(arm.trials), arm.wall_clock_s, arm.winner_val_accuracy)
    if arm.winner_config is None:
        return arm_row(arm, [], None, ctx.budget_s)
    clock = time.perf_counter()
    seed = arm.winner_config["seed"]
    tests = [retrain_and_test({**arm.winner_config, "seed": seed + i}, ctx.splits) for i in range(ctx.retrains)]
    log.info("seed %d, %s: test accuracy %s", arm.seed, tool, ", ".join(f"{t['accuracy']:.3f}" for t in tests))
    row = arm_row(arm, tests, time.perf_counter() - clock, ctx.budget_s)
    if ctx.final_models:
        row.update(final_model_row(arm, ctx))
    return row


def final_members(arm: ArmResult, size: int) -> list[TrialRecord]:
    """The configs an arm's final model averages, best first, as search.run's trial records.

    FER Tune's are its own (:func:`search.pipeline.final_members`: its confirmation's ranking,
    then its next best by validation); any other tool's are its ``size`` best distinct configs by
    validation accuracy, those that ran every epoch first (:func:`search.final.ranking.pick_ensemble`,
    the rule FER Tune follows without a confirmation)."""
    if arm.members is not None:
        return arm.members
    trials = [TrialRecord(trial_id=t.trial_id, status=t.status, config=t.config, final_metric=t.val_accuracy)
              for t in arm.trials if t.scored and t.config is not None]
    return pick_ensemble(trials, size)


def final_model_row(arm: ArmResult, ctx: Context) -> dict[str, Any]:
    """``--final-models``: the arm's final model, built and tested by search.run's own final stage.

    Its members train as Ray tasks on a local cluster (one trial's resources each, as
    ``search.run`` retrains them), are checked for learning and retrained once or dropped
    (:func:`search.final.retrain_members`), and the final model averages the kept members'
    test probabilities, each on the face and its mirror. A failure here is recorded in the
    row (``final_error``) and loses none of the arm's other figures."""
    import ray

    settings = arm.settings or ctx.fertune_settings(arm.seed)  # every arm's final stage is FER Tune's
    members = final_members(arm, settings.final.ensemble)
    empty = {"final_test_accuracy": None, "final_test_macro_f1": None, "final_members": [], "final_dropped": [],
             "final_s": None, "final_error": None}
    if not members:
        return {**empty, "final_error": "no scored trial to build a final model from"}
    log.info("seed %d, %s: final model of %d members (trials %s)", arm.seed, arm.tool, len(members),
             ", ".join(m.trial_id for m in members))
    clock = time.perf_counter()
    try:
        with contextlib.redirect_stdout(sys.stderr):
            start_ray(None)
            try:
                kept, dropped, _ = retrain_members(*final_networks(members, settings.final), ctx.splits,
                                                   settings.search.resources)
            finally:
                ray.shutdown()
    except Exception:  # noqa: BLE001 - the arm's search and winner figures stand without it
        error = traceback.format_exc()
        log.error("seed %d, %s: the final model failed:\n%s", arm.seed, arm.tool, error)
        return {**empty, "final_error": error.strip().splitlines()[-1]}
    probabilities = np.mean([m.result["probabilities"] for m in kept], axis=0)
    test = ctx.splits.test
    metrics = evaluate_predictions(test.labels, probabilities.argmax(axis=1), test.class_names)
    log.info("seed %d, %s: final model test accuracy %.3f, macro-F1 %.3f", arm.seed, arm.tool,
             metrics["accuracy"], metrics["macro_f1"])
    return {**empty, "final_test_accuracy": metrics["accuracy"], "final_test_macro_f1": metrics["macro_f1"],
            "final_members": [{"trial_id": m.trial.trial_id, "val_accuracy": m.trial.final_metric,
                               "epochs": m.config.epochs, "seed": m.config.seed, "attempts": m.attempts,
                               "test_accuracy": m.result["metrics"]["accuracy"]} for m in kept],
            "final_dropped": dropped, "final_s": round(time.perf_counter() - clock, 2), "final_test": metrics}


def write_results(output: Path, meta: dict[str, Any], rows: list[dict[str, Any]], tools: list[str]) -> None:
    """compare.md and compare.json as they stand (rewritten after each arm)."""
    means = tool_means(rows, tools)
    write_atomic(output / "compare.md", render_markdown(meta, render_table(rows, means)))
    write_atomic(output / "compare.json", json.dumps({**meta, "rows": rows, "means": means}, indent=2,
                                                     default=_plain))


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("seed", "tool", *(key for key, _, _ in TABLE + FINAL_TABLE), "error") if k in row}


def _round(value: Optional[float]) -> Optional[float]:
    return None if value is None else round(value, 2)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="compare_tuners"))
