"""The run folder: where a run's files go, its saved state for ``--resume``, and atomic writes.

``OUTPUT/NAME/`` holds ``run.json`` (the run's defining arguments and the data's
fingerprint, written once when the run starts), ``budget.json`` (:class:`search.budget.Budget`'s),
``tune/`` (Ray Tune's experiment), ``tensorboard/``, ``confirm.json``, ``final/`` (the final
stage's trainings' states until the run ends), ``best/`` (the exported model), ``plots/``,
``report.md`` and ``report.json``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from fer_core.errors import ConfigError
from fer_core.staging import write_atomic

RUN_FILE = "run.json"  # the run's arguments, so that --resume continues the same search
TUNE_DIR = "tune"  # Ray Tune's own experiment folder inside the run folder
TENSORBOARD_DIR = "tensorboard"
BEST_DIR = "best"
FINAL_DIR = "final"  # the final stage's trainings leave their states here, for --resume, until the run ends


def output_path(text: str) -> Path:
    """``--output`` as a local folder: a path, or a ``file://`` URI as Ray's storage writes them.

    Other storage URIs (``s3://``, ``gs://``) are refused in one line: the report, the
    exported model and TensorBoard's files are written with local file operations.
    """
    scheme, sep, rest = text.partition("://")
    if sep and scheme != "file":
        raise ConfigError(f"--output {text!r}: storage URIs other than file:// are not supported; "
                          "expected a folder every Ray node sees (a shared file system)")
    return Path(rest if sep else text).expanduser().resolve()


def prepare_run_dir(output: str, name: str, resume: bool) -> Path:
    """Check the output folder before the search; return the run folder (not created yet).

    A new run must not overwrite an old one; a resumed run must exist. The output folder
    must be writable, checked by looking for the nearest existing folder, so that a search
    is never started only to fail when its first result is saved.
    """
    root = output_path(output)
    run_dir = root / name
    if resume:
        if not (run_dir / RUN_FILE).is_file():
            raise ConfigError(f"--resume: no run {name!r} in {root} (expected {run_dir / RUN_FILE})")
    elif run_dir.exists():
        raise ConfigError(f"--name {name!r}: {run_dir} exists; pass --resume to continue it, or another --name")
    check_writable(root, output)
    return run_dir


def check_writable(folder: Path, given: str) -> None:
    """Refuse, naming ``--output`` as ``given``, a folder that could not be created and written:
    the nearest existing folder on its path must be a writable folder."""
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"--output {given!r}: {probe} is not a writable folder")


def read_state(run_dir: Path) -> dict[str, Any]:
    """The run's saved state (``run.json``): its defining arguments and the data's fingerprint."""
    return json.loads((run_dir / RUN_FILE).read_text())


def write_state(run_dir: Path, state: dict[str, Any]) -> None:
    """Save the run's state atomically."""
    write_atomic(run_dir / RUN_FILE, json.dumps(state, indent=2))


def drop_final_states(run_dir: Path) -> None:
    """Remove the final stage's training states (``FINAL_DIR``) of a run or fold whose results are
    written: nothing resumes them any more, and a FER2013 member's is tens of megabytes."""
    shutil.rmtree(Path(run_dir) / FINAL_DIR, ignore_errors=True)
