"""The confirmation (:mod:`search.final.confirm`): the leading configs cross-validated within the time
they have, resumed from their saved trainings, ranked by them; broken ones leave the ranking."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

import pytest

from search.final.confirm import (CONFIRM_FILE, confirm, confirm_leaders, estimated_seconds, folds_of, how_many_fit,
                                  read_saved)
from search.records import TrialRecord
from search.settings import ConfirmSettings, Resources
from search.tuning.space import seed_point


def _trial(trial_id: str, metric: Optional[float], val_loss: float, status: str = "completed") -> TrialRecord:
    return TrialRecord(trial_id, status, {"lr": trial_id}, final_metric=metric,
                       history=({"val_accuracy": metric, "val_loss": val_loss},))


def _splits_and_folds(seed: int = 7):
    from fer_core.data import load
    from fer_core.splits import make_splits

    splits = make_splits(load("synthetic:120"), "subject")
    rest = splits.train.concat(splits.val)
    return splits, rest, folds_of(rest, 2, seed)


def test_how_many_configs_fit_the_time_left() -> None:
    # 3 folds each, 2 at a time: 30 s, 60 s, then 90 s of trainings per config
    assert how_many_fit([20.0, 20.0, 20.0, 20.0], folds=3, slots=2, seconds=100) == 3
    assert how_many_fit([20.0, 20.0, 20.0, 20.0], folds=3, slots=2, seconds=29) == 0
    assert how_many_fit([20.0, 100.0, 1.0], folds=3, slots=2, seconds=100) == 1  # the order is kept
    assert how_many_fit([20.0] * 3, folds=3, slots=1, seconds=1e9) == 3


def test_estimated_seconds_scale_the_trial_s_epochs_to_a_fold() -> None:
    from search.budget import TASK_OVERHEAD_S

    trial = TrialRecord("t", "completed", {"epochs": 10}, history=({"train_seconds": 2.0, "val_seconds": 0.5},) * 3)
    # a fold trains on 2/3 of 900 faces, the trial trained on 600: the same epoch time
    assert estimated_seconds(trial, 3, 900, 600) == pytest.approx(10 * 2.5 + TASK_OVERHEAD_S)
    assert estimated_seconds(trial, 2, 1200, 600) == pytest.approx(10 * 2.5 + TASK_OVERHEAD_S)


def test_confirmation_resumes_from_its_saved_trainings_and_ranks_by_them(tmp_path: Path) -> None:
    """Every (config, fold) training already in confirm.json: nothing is trained again, the saved
    predictions decide the order, and a file from another split is not trusted."""
    import ray

    splits, rest, parts = _splits_and_folds()
    settings = ConfirmSettings(configs=2, folds=2, seed=7)
    candidates = [TrialRecord("a", "completed", seed_point(), final_metric=0.9),
                  TrialRecord("b", "completed", {**seed_point(), "dense_dropout": 0.3}, final_metric=0.5)]
    wrong = (rest.labels[parts[1][1]] + 1) % rest.n_classes
    done = {"a/0": {"predictions": [0] * len(parts[0][1])}, "a/1": {"predictions": wrong.tolist()},
            "b/0": {"predictions": rest.labels[parts[0][1]].tolist()},
            "b/1": {"predictions": rest.labels[parts[1][1]].tolist()}}
    (tmp_path / CONFIRM_FILE).write_text(json.dumps({"folds": 2, "seed": 7, "n_rest": len(rest), "done": done}))
    result = confirm(candidates, splits, settings, Resources(), tmp_path)
    assert not ray.is_initialized()  # nothing was trained
    assert [t.trial_id for t in result.ranked] == ["b", "a"] and result.skipped is None and not result.left_out
    assert result.scores["b"]["cv_accuracy"] == 1.0 and result.scores["b"]["fold_accuracy"] == [1.0, 1.0]
    zeros = float((rest.labels[parts[0][1]] == 0).mean())
    assert result.scores["a"]["fold_accuracy"] == pytest.approx([zeros, 0.0])
    summary = result.to_json()
    assert [row["trial_id"] for row in summary["trials"]] == ["b", "a"] and summary["n_scored"] == len(rest)
    assert [row["val_metric"] for row in summary["trials"]] == [0.5, 0.9] and summary["folds"] == 2
    assert read_saved(tmp_path / CONFIRM_FILE, 2, 8, len(rest)) == {}  # another fold seed: other folds
    assert read_saved(tmp_path / CONFIRM_FILE, 3, 7, len(rest)) == {}
    assert len(read_saved(tmp_path / CONFIRM_FILE, 2, 7, len(rest))) == 4


@pytest.mark.parametrize("all_broken", [False, True])
def test_configs_that_diverge_or_fail_in_a_fold_leave_the_ranking_and_the_final_model(tmp_path: Path,
                                                                                      all_broken: bool) -> None:
    """A config whose cross-validation diverged (or whose training failed) is never ranked, and
    never comes back as a final member through the search's own order."""
    from search.pipeline import final_members
    from search.settings import RunSettings

    splits, rest, parts = _splits_and_folds()
    trials = [TrialRecord(name, "completed", {**seed_point(), "dense_dropout": 0.1 * i}, final_metric=metric)
              for i, (name, metric) in enumerate([("a", 0.9), ("b", 0.8), ("c", 0.7)])]
    right = {f: rest.labels[parts[f][1]].tolist() for f in (0, 1)}
    done = {"a/0": {"diverged": "training loss became nan"}, "a/1": {"predictions": right[1]},
            "b/0": {"predictions": right[0]}, "b/1": {"failed": "WorkerCrashedError: the worker died"},
            "c/0": {"predictions": right[0]},
            "c/1": {"diverged": "training loss became inf"} if all_broken else {"predictions": right[1]}}
    (tmp_path / CONFIRM_FILE).write_text(json.dumps({"folds": 2, "seed": 7, "n_rest": len(rest), "done": done}))
    result = confirm(trials, splits, ConfirmSettings(configs=3, folds=2, seed=7), Resources(), tmp_path)
    assert [t.trial_id for t in result.ranked] == ([] if all_broken else ["c"])
    assert sorted(result.excluded) == (["a", "b", "c"] if all_broken else ["a", "b"])
    assert sorted(t.trial_id for t in result.left_out) == sorted(result.excluded)
    assert [row["trial_id"] for row in result.to_json()["trials"]] == ([] if all_broken else ["c"]) + \
        [t for t in ("a", "b", "c") if t in result.excluded]
    members = final_members(RunSettings(), splits, trials, result)
    assert [t.trial_id for t in members] == ([] if all_broken else ["c"])


def test_a_deadline_too_close_for_two_configs_skips_the_confirmation(tmp_path: Path) -> None:
    """With a deadline the confirmation trains only what fits before it; fewer than 2 configs: none,
    the search's order stands (and nothing trains)."""
    import ray

    from search.budget import now

    splits, _, _ = _splits_and_folds()
    trials = [TrialRecord(name, "completed", {**seed_point(), "dense_dropout": 0.1 * i}, final_metric=0.9 - i / 10,
                          history=({"train_seconds": 5.0},))
              for i, name in enumerate("abc")]
    result = confirm(trials, splits, ConfirmSettings(configs=3, folds=2, seed=7), Resources(), tmp_path,
                     deadline=now() + 1.0, slots=2)
    assert not ray.is_initialized() and not (tmp_path / CONFIRM_FILE).exists()
    assert [t.trial_id for t in result.ranked] == ["a", "b", "c"] and result.scores == {}
    assert result.skipped == "the time budget left too little for 2 configs"


@pytest.mark.parametrize("flag, n_train, count", [(None, 630, 6), (None, 16383, 6), (None, 16384, 0),
                                                  (None, 28709, 0), (4, 28709, 4), (0, 630, 0)])
def test_a_large_data_set_is_not_confirmed_unless_asked(flag, n_train: int, count: int) -> None:
    """``--confirm`` by default: 6 configs, none from 16,384 training faces on, where the search's
    ranking stands at once (nothing trains) and the report says why."""
    settings = ConfirmSettings(configs=flag)
    assert settings.count(n_train) == count
    if count:
        return
    trials = [_trial("a", 0.5, 0.2), _trial("b", 0.6, 0.1), _trial("c", 0.4, 0.1)]
    splits = SimpleNamespace(train=range(n_train), val=range(3589))
    result = confirm_leaders(trials, splits, settings, Resources(), Path("/nonexistent"), ensemble=2)
    assert [t.trial_id for t in result.ranked] == ["b", "a"] and result.scores == {}
    assert result.skipped == ("--confirm 0" if flag == 0 else f"{n_train} training faces: 3589 validation faces "
                                                                "decide alone")
