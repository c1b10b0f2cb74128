"""A Tune trial read back from its own files into a record (:mod:`search.tuning.trials`)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from search.records import TrialRecord
from search.tuning.trials import trial_record


def test_a_restored_trial_s_history_has_each_epoch_once(tmp_path: Path) -> None:
    """A trial restored from its epoch-2 checkpoint after its node was lost at epoch 4 reports
    epochs 3 and 4 again; the record keeps the attempt that went on, and scores from it."""
    lost = [{"epoch": e, "val_accuracy": 0.9, "node_id": "a"} for e in (1, 2, 3, 4)]
    restored = [{"epoch": e, "val_accuracy": 0.5 + e / 100, "node_id": "b", "restored_from_epoch": 2}
                for e in (3, 4, 5, 6)]
    (tmp_path / "result.json").write_text("\n".join(json.dumps(row) for row in lost + restored))
    trial = SimpleNamespace(trial_id="t", status="TERMINATED", config={}, local_path=str(tmp_path), path=None,
                            last_result={"training_iteration": 6, "node_id": "b"})
    record = trial_record(trial, "val_accuracy", max_epochs=6, node_ips={"b": "127.0.0.2"})
    assert isinstance(record, TrialRecord)
    assert [(row["epoch"], row["node_id"]) for row in record.history] == \
        [(1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "b"), (6, "b")]
    assert record.final_metric == 0.56 and record.best_metric == 0.9  # epochs 1-2 stand
    assert record.status == "completed" and record.scored and record.epochs == 6
    assert record.node_id == "b" and record.node_ip == "127.0.0.2"
