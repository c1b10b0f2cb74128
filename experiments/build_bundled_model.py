"""Build the FER2013 model bundled with FER Tune: a FER Tune run on FER2013, packaged into fer_core/models/fer2013/.

    python -m experiments.build_bundled_model --data ../shared/data/fer2013 --time-budget 1h --seed 0
    python -m experiments.build_bundled_model --data ../shared/data/fer2013 --name fer2013-bundled --resume
    python -m experiments.build_bundled_model --data ../shared/data/fer2013 --from-run runs/fer2013-bundled

The first runs ``python -m search.run`` on FER2013's usage split (Training trains, PublicTest
validates, PrivateTest is the test, read once by the final model) with ``--ensemble 2`` and the
flags given after ``--``, then packages the run. The second goes on with a run that stopped (search.run's
``--resume``: finished trials are kept, and the final stage's trainings go on from their saved
states over the epochs they were planned for), so a long build can be done in several sittings. The
third only packages a finished run. Packaging copies the forms FER Tune uses (``model.keras``,
``model.tflite``; no SavedModel folder) from the run's ``best/`` into the target folder and writes
their card: the run's card, plus the search command that rebuilds it (from the run's
``run.json``), the commit, the data's fingerprints, and the figures of the copied model on
PrivateTest (accuracy with its 95% interval, macro-F1, balanced accuracy, per-class recall, the
majority class). Data that is not FER2013 (its seven classes in order, with PublicTest and
PrivateTest) is refused in one line with exit status 2, before anything runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import numpy as np

from fer_core.bundled import BUNDLED_DIR, FER2013_CLASSES, FORMS, MAX_BYTES, check_bundle, file_digest
from fer_core.data import load
from fer_core.dataset import Dataset
from fer_core.errors import ConfigError, DataError, run_cli
from fer_core.evaluate import evaluate_predictions
from fer_core.export import CARD_FILE, loading_card, read_card
from fer_core.splits import make_splits
from search.rundir import BEST_DIR, RUN_FILE, output_path, read_state
from search.settings import FLAGS

log = logging.getLogger("build_bundled_model")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BUDGET = "1h"  # what the shipped model was built with (its card): the prior's configs, no search
# members, unless given after --: a one-hour run packs four (the wider network and three of the
# mirror-image one, about 13 MiB in two forms), past MAX_BYTES; two take 7.4 MiB
DEFAULT_ENSEMBLE = 2
DEFAULT_NAME = "fer2013-bundled"
REPORT_FILE = "report.json"
COMMAND_FILE = "build_command.txt"  # in the run's folder: the search.run command the builder ran
COMMIT_FILE = "build_commit.txt"  # ... and the code's commit when it started: packaging may come later
SPLIT = "usage"  # FER2013's own protocol: PublicTest validates, PrivateTest tests
OWN_FLAGS = ("--data", "--split", "--folds", "--output", "--name", "--resume", "--seed", "--time-budget")
TFLITE_AGREEMENT = 0.99  # the share of PrivateTest faces on which both forms must give the same class


@dataclass(frozen=True)
class Build:
    """What to build: the data, the run (its folder, and whether it is to be run, resumed or only
    packaged), the search.run flags added after ``--``, and the folder the bundle goes to."""

    data: str
    run_dir: Path
    output: str
    name: str
    time_budget: str
    seed: int
    search_args: tuple[str, ...]
    resume: bool
    from_run: bool
    target: Path


def main(argv: Optional[list[str]] = None) -> int:
    """Parse; check the data is FER2013; run (or resume) the search unless ``--from-run``; package it."""
    build = parse(argv)
    data = load_fer2013(build.data)
    if not build.from_run:
        del data  # the search loads it in its own process; 330 MB not held here for hours
        status = run_search(build)
        if status != 0:
            print(f"build_bundled_model: search.run stopped with status {status}; continue with: python -m "
                  f"experiments.build_bundled_model --data {build.data} --output {build.output} --name {build.name} "
                  "--resume", file=sys.stderr)
            return status
        data = load_fer2013(build.data)  # from the cache the search filled: seconds
    card = package(build.run_dir, data, build.target, package_command=argv if argv is not None else sys.argv[1:])
    print(summary(card, build.target))
    return 0


# --------------------------------------------------------------------------- the command line

def parse(argv: Optional[list[str]]) -> Build:
    """The command line as a checked :class:`Build`; a bad value raises :class:`ConfigError`."""
    parser = argparse.ArgumentParser(prog="python -m experiments.build_bundled_model",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="FER2013's folder (train/ and test/ of class folders)")
    parser.add_argument("--time-budget", default=DEFAULT_BUDGET, help=f"search.run's --time-budget "
                                                                      f"(default {DEFAULT_BUDGET})")
    parser.add_argument("--seed", type=int, default=0, help="search.run's --seed (default 0)")
    parser.add_argument("--output", default="runs", help="folder of runs (default runs)")
    parser.add_argument("--name", default=DEFAULT_NAME, help=f"the run's name in --output (default {DEFAULT_NAME})")
    parser.add_argument("--resume", action="store_true", help="continue the run --name in --output")
    parser.add_argument("--from-run", metavar="RUNDIR", help="package this finished run instead of running one")
    parser.add_argument("--target", default=str(BUNDLED_DIR), help="where the bundle goes (default: the package's "
                                                                   "fer_core/models/fer2013)")
    parser.add_argument("search_args", nargs=argparse.REMAINDER, help="-- then more flags of search.run")
    args = parser.parse_args(argv)
    search_args = tuple(args.search_args[1:] if args.search_args[:1] == ["--"] else args.search_args)
    for arg in search_args:
        if arg.split("=")[0] in OWN_FLAGS:
            raise ConfigError(f"{arg.split('=')[0]} after --: the builder sets it (--split {SPLIT}; give --data, "
                              "--seed, --time-budget, --output, --name and --resume before --)")
    if args.from_run and args.resume:
        raise ConfigError("--from-run with --resume: --from-run packages a finished run; --resume continues one")
    run_dir = Path(args.from_run).expanduser().resolve() if args.from_run else output_path(args.output) / args.name
    if args.from_run and not (run_dir / RUN_FILE).is_file():
        raise ConfigError(f"--from-run {args.from_run}: no {RUN_FILE}; expected a FER Tune run's folder")
    return Build(data=args.data, run_dir=run_dir, output=args.output, name=args.name, time_budget=args.time_budget,
                 seed=args.seed, search_args=search_args, resume=args.resume, from_run=bool(args.from_run),
                 target=Path(args.target).expanduser().resolve())


# --------------------------------------------------------------------------- the data

def load_fer2013(source: str) -> Dataset:
    """FER2013 as :func:`fer_core.data.load` reads it, checked to be FER2013: its seven classes in
    :data:`~fer_core.bundled.FER2013_CLASSES`' order and a PublicTest and a PrivateTest part; anything
    else raises :class:`DataError` naming the data and what was expected."""
    data = load(source)
    if data.class_names != FER2013_CLASSES:
        raise DataError(f"--data {source}: classes {', '.join(data.class_names)}; expected FER2013's seven, "
                        f"{', '.join(FER2013_CLASSES)} (its image layout: train/ and test/ of class folders)")
    parts = set(data.usage.tolist()) if data.usage is not None else set()
    if not {"Training", "PublicTest", "PrivateTest"} <= parts:
        raise DataError(f"--data {source}: parts {', '.join(sorted(parts)) or 'none'}; expected FER2013's "
                        "Training, PublicTest and PrivateTest (files named Training_*, PublicTest_*, PrivateTest_*)")
    return data


# --------------------------------------------------------------------------- the search

def search_command(build: Build) -> list[str]:
    """The ``python -m search.run`` command line of ``build``'s run."""
    return [sys.executable, "-m", "search.run", "--data", build.data, "--split", SPLIT, "--time-budget",
            build.time_budget, "--seed", str(build.seed), "--output", build.output, "--name", build.name,
            *(["--resume"] if build.resume else []),
            *([] if any(a.split("=")[0] == "--ensemble" for a in build.search_args)
              else ["--ensemble", str(DEFAULT_ENSEMBLE)]), *build.search_args]


def run_search(build: Build) -> int:
    """Run (or resume) the search as its own process, its progress on this terminal; its exit status.

    The first command is kept in the run's folder (:data:`COMMAND_FILE`): ``run.json`` leaves out the
    flags that do not define a run (``--ensemble``, ``--final-*``), and the card names the whole command."""
    command, commit = search_command(build), git_commit()  # the code the run starts with
    log.info("running: %s", shlex.join(["python", *command[1:]]))
    status = subprocess.run(command, cwd=os.getcwd()).returncode
    if build.run_dir.is_dir() and not (build.run_dir / COMMAND_FILE).exists() and not build.resume:
        (build.run_dir / COMMAND_FILE).write_text(shlex.join(["python", *command[1:]]) + "\n")
        (build.run_dir / COMMIT_FILE).write_text(commit + "\n")
    return status


def rebuild_command(run_dir: Path, state: dict[str, Any]) -> str:
    """The search.run command that made the run in ``run_dir``: as the builder ran it
    (:data:`COMMAND_FILE`), else from its ``run.json``, every flag that defines a run and differs
    from its default, the seed and the budget always (``run.json`` does not keep ``--ensemble`` and
    the ``--final-*`` flags: a run started by hand with them needs them added)."""
    if (run_dir / COMMAND_FILE).is_file():
        return (run_dir / COMMAND_FILE).read_text().strip()
    words = ["python", "-m", "search.run"]
    for flag in FLAGS:
        value = state["args"].get(flag.dest, flag.default)
        always = flag.dest in ("seed", "split", "time_budget") and value is not None
        if not flag.defines_run or (not always and (value is None or value == flag.default)):
            continue
        words += [flag.name, *(map(str, value) if isinstance(value, (list, tuple)) else [str(value)])]
    return shlex.join(words)


# --------------------------------------------------------------------------- packaging

def package(run_dir: Path, data: Dataset, target: Path, package_command: list[str]) -> dict[str, Any]:
    """Copy the forms of ``run_dir``'s model into ``target`` with their card; return the card.

    The run must be finished, on this data (its fingerprint), on the usage split, and its forms
    together at most :data:`~fer_core.bundled.MAX_BYTES`. The copied files are tested on PrivateTest
    (the keras form; the tflite form must agree on :data:`TFLITE_AGREEMENT` of the faces), the card
    is checked with :func:`~fer_core.bundled.check_bundle`, and only then moved into ``target``, the
    card last.
    """
    fingerprint = data.fingerprint()  # hashes every face: once
    best, state, report = check_run(run_dir, data, fingerprint)
    sizes = {name: (best / name).stat().st_size for name in FORMS.values()}
    if sum(sizes.values()) > MAX_BYTES:
        raise ConfigError(f"{best}: its forms take {sum(sizes.values()) / 2**20:.1f} MiB "
                          f"({', '.join(f'{n} {s / 2**20:.1f} MiB' for n, s in sizes.items())}); expected at most "
                          f"{MAX_BYTES / 2**20:.0f} MiB: build with fewer members (-- --ensemble N)")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        for name in [*FORMS.values(), CARD_FILE]:  # the run's card until the bundle's replaces it: loading reads it
            shutil.copyfile(best / name, staging / name)
        splits = make_splits(data, SPLIT)
        test = test_figures(staging, splits.test)
        if abs(test["accuracy"] - report["test_accuracy"]) > 1e-3:
            log.warning("the copied model scores %.4f on PrivateTest, the run's report %.4f", test["accuracy"],
                        report["test_accuracy"])
        card = bundle_card(read_card(best), staging, run_dir, state, report, test, fingerprint, splits.test, package_command)
        (staging / CARD_FILE).write_text(json.dumps(card, indent=2))
        check_bundle(staging)
        target.mkdir(exist_ok=True)
        for name in [*FORMS.values(), CARD_FILE]:  # the card last: a folder with a card has its files
            os.replace(staging / name, target / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return card


def check_run(run_dir: Path, data: Dataset, fingerprint: str) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """``(best/, run.json, report.json)`` of a finished run on ``data`` (whose :meth:`Dataset.fingerprint`
    is ``fingerprint``), on its usage split; a :class:`ConfigError` naming the run otherwise."""
    best = run_dir / BEST_DIR
    if not (run_dir / REPORT_FILE).is_file() or not all((best / n).is_file() for n in [*FORMS.values(), CARD_FILE]):
        raise ConfigError(f"{run_dir}: no {REPORT_FILE} or no {', '.join(FORMS.values())} and {CARD_FILE} in "
                          f"{BEST_DIR}/; expected a finished run (continue a stopped one with --resume)")
    state, report = read_state(run_dir), json.loads((run_dir / REPORT_FILE).read_text())
    if state.get("fingerprint") != fingerprint:
        raise ConfigError(f"{run_dir}: the run's data (fingerprint {state.get('fingerprint')}) is not the data at "
                          f"--data {data.source} ({fingerprint}); expected the run made on it")
    if report.get("split") != SPLIT:
        raise ConfigError(f"{run_dir}: a {report.get('split')} split; expected FER2013's {SPLIT} split "
                          "(PrivateTest held out)")
    return best, state, report


def test_figures(folder: Path, test: Dataset) -> dict[str, Any]:
    """The model in ``folder`` on the ``test`` faces: the protocol's figures, the per-class recall, the
    majority class, and the share of faces on which the tflite form gives the keras form's class."""
    from fer_core.predictor import Predictor

    crops = np.round(test.images[..., 0] * 255).astype(np.uint8)  # the faces as 8-bit crops, as a photo gives them
    predicted = {form: Predictor.load(folder, backend=form).classify(crops).argmax(axis=1) for form in FORMS}
    agreement = float((predicted["keras"] == predicted["tflite"]).mean())
    if agreement < TFLITE_AGREEMENT:
        raise ConfigError(f"{folder}: the tflite form gives the keras form's class on {agreement:.1%} of the test "
                          f"faces; expected at least {TFLITE_AGREEMENT:.0%}")
    figures = evaluate_predictions(test.labels, predicted["keras"], test.class_names)
    counts = test.class_counts()
    return {**{k: figures[k] for k in ("n", "accuracy", "accuracy_ci95", "macro_f1", "balanced_accuracy",
                                       "majority_accuracy")},
            "majority_class": test.class_names[int(counts.argmax())],
            "per_class_recall": {name: round(v["recall"], 4) for name, v in figures["per_class"].items()},
            "confusion_matrix": figures["confusion_matrix"], "tflite_agreement": agreement,
            "form": "keras", "part": "PrivateTest"}


def bundle_card(card: dict[str, Any], folder: Path, run_dir: Path, state: dict[str, Any], report: dict[str, Any],
                test: dict[str, Any], fingerprint: str, test_part: Dataset, package_command: list[str]) -> dict[str, Any]:
    """The run's model card made the bundle's: its forms, their sizes and digests, how it was built, its figures."""
    loading = {k: v for k, v in loading_card().items() if k != "saved_model"}
    loading["fer_tune"] = "fer_core.Predictor.load() (the bundled model; backend='keras'|'tflite')"
    return {**card, "name": "FER Tune's bundled FER2013 model", "files": dict(FORMS),
            "file_bytes": {n: (folder / n).stat().st_size for n in FORMS.values()},
            "sha256": {n: file_digest(folder / n) for n in FORMS.values()}, "loading": loading,
            "bundle": {"command": rebuild_command(run_dir, state),
                       "package_command": shlex.join(["python", "-m", "experiments.build_bundled_model",
                                                      *package_command]),
                       "seed": state["args"].get("seed"), "time_budget": state["args"].get("time_budget"),
                       "commit": run_commit(run_dir), "packaged": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                       "run": report.get("name"), "data": "FER2013 (the Kaggle image layout): trained on Training + "
                       "PublicTest (validation), tested once on PrivateTest",
                       "data_fingerprint": fingerprint, "test_fingerprint": test_part.fingerprint(),
                       "run_wall_clock_s": (report.get("timings") or {}).get("run_s"),
                       "run_test_accuracy": report.get("test_accuracy"),
                       "seed_recipe_test_accuracy": report.get("seed_recipe_test_accuracy")},
            "privatetest": test}


def run_commit(run_dir: Path) -> str:
    """The code's commit when the builder started the run in ``run_dir`` (:data:`COMMIT_FILE`); for a run
    started by hand, the commit now, marked as the packaging's."""
    if (run_dir / COMMIT_FILE).is_file():
        return (run_dir / COMMIT_FILE).read_text().strip()
    return f"{git_commit()} (when packaged; the run's own is not recorded)"


def git_commit() -> str:
    """``git rev-parse HEAD`` of the project, with `` (uncommitted changes)`` when its tracked files differ."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"{head} (uncommitted changes)" if dirty else head


def summary(card: dict[str, Any], target: Path) -> str:
    """What the build printed at the end: where the bundle is, its size and its PrivateTest figures."""
    t = card["privatetest"]
    low, high = t["accuracy_ci95"]
    return (f"bundled model in {target} ({sum(card['file_bytes'].values()) / 2**20:.1f} MiB): PrivateTest "
            f"{t['accuracy']:.1%} (95% CI {low:.1%}-{high:.1%}), macro-F1 {t['macro_f1']:.3f}, balanced accuracy "
            f"{t['balanced_accuracy']:.1%}; majority class {t['majority_class']} {t['majority_accuracy']:.1%}\n"
            f"recall: " + ", ".join(f"{n} {r:.2f}" for n, r in t["per_class_recall"].items()) +
            f"\nrebuild: {card['bundle']['command']}")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.exit(run_cli(main, prog="build_bundled_model"))
