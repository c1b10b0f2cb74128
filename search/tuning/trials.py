"""The search's trials as records: a Tune trial read back from its own files into a
:class:`search.records.TrialRecord`.

Tune's ``result.json`` is the source: it holds every epoch a trial reported, in order, and
survives a lost node or a killed driver, where the trial's in-memory results do not.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from search.records import TrialRecord, finite

HISTORY_FIELDS = ("epoch", "val_accuracy", "val_macro_f1", "val_loss", "train_loss", "train_accuracy",
                  "learning_rate", "train_seconds", "val_seconds", "time_total_s", "node_id", "restored_from_epoch")


def trial_record(trial, metric: str, max_epochs: int, node_ips: Optional[Mapping[str, str]] = None) -> TrialRecord:
    """A Tune trial as the run's record: config, final and best metric, epochs, status, node
    (``node_ips``: Ray's node ids to their addresses)."""
    last = dict(trial.last_result or {})
    history = trial_history(trial)
    values = [row[metric] for row in history if finite(row.get(metric))]
    epochs = int(last.get("training_iteration", len(history)) or 0)
    if trial.status == "ERROR":
        status = "failed"
    elif trial.status == "TERMINATED":
        own = int(trial.config.get("epochs") or max_epochs)  # the fine-tuning space searches a trial's epochs
        status = "completed" if epochs >= min(max_epochs, own) else "stopped_early"
    else:
        status = "unfinished"
    return TrialRecord(
        trial_id=trial.trial_id, status=status, config={k: plain(v) for k, v in trial.config.items()},
        final_metric=values[-1] if values else None, best_metric=max(values) if values else None, epochs=epochs,
        node_ip=(node_ips or {}).get(last.get("node_id"), last.get("node_ip")), node_id=last.get("node_id"),
        tf_threads=last.get("tf_threads"), error=_error_text(trial) if status == "failed" else None,
        history=tuple(history))


def trial_file(trial, name: str) -> Optional[Path]:
    """A file of the trial's folder, where Tune wrote it.

    ``trial.local_path`` is in the current Ray session's folder, which Tune writes first and
    syncs to the run's ``tune/`` folder (``trial.path``); it holds only the trials of this
    session. After ``--resume`` the trials finished before the interruption are in the
    run's folder alone.
    """
    for folder in (trial.local_path, trial.path):
        if folder and (Path(folder) / name).is_file():
            return Path(folder) / name
    return None


def trial_history(trial) -> list[dict[str, float]]:
    """The per-epoch results of a trial, read from its ``result.json`` (Tune's own log), an epoch
    once: a trial restored from its checkpoint (a lost node, a killed driver) reports again
    the epochs after it, and those replace the lost attempt's."""
    path = trial_file(trial, "result.json")
    rows: list[dict[str, float]] = []
    if path is not None:
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a crash
            epoch = row.get("epoch")
            while rows and epoch is not None and rows[-1].get("epoch", -1) >= epoch:
                rows.pop()
            rows.append({k: row[k] for k in HISTORY_FIELDS if k in row})
    return rows


def _error_text(trial) -> str:
    path = trial_file(trial, "error.txt")
    text = path.read_text() if path is not None else str(getattr(trial, "error_msg", "") or "unknown error")
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    # the last line of a traceback names the exception and its message
    return lines[-1][:500] if lines else "unknown error"


def plain(value: Any) -> Any:
    """A numpy scalar as the Python number JSON takes."""
    return value.item() if isinstance(value, np.generic) else value
