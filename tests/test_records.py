"""The records the stages hand each other: a trial's costs, and the round trip through JSON."""

from __future__ import annotations

import json

import pytest

from search.records import TrialRecord
from search.tuning.space import seed_point


def test_epoch_seconds_is_the_median_of_the_trials_epochs() -> None:
    history = ({"train_seconds": 1.0, "val_seconds": 0.5}, {"train_seconds": 9.0},
               {"train_seconds": 2.0, "val_seconds": 0.5}, {"train_seconds": float("nan")})
    assert TrialRecord("a", "completed", {}, history=history).epoch_seconds == 2.5
    assert TrialRecord("b", "failed", {}).epoch_seconds == 0.0


def test_a_trial_record_reads_back_from_its_json_whole() -> None:
    record = TrialRecord("t1", "stopped_early", {**seed_point(), "epochs": 3}, final_metric=0.5, best_metric=0.6,
                         epochs=3, node_ip="127.0.0.1", history=({"epoch": 1, "val_accuracy": 0.6},))
    assert TrialRecord.from_json(json.loads(json.dumps(record.to_json()))) == record
    assert record.scored and not TrialRecord("t2", "failed", {}, final_metric=0.5).scored
    assert record.train_config.epochs == 3


@pytest.mark.parametrize("status", ["completed", "stopped_early"])
def test_a_scored_trial_needs_a_metric(status: str) -> None:
    assert not TrialRecord("t", status, {}).scored
