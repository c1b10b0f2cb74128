"""The final members' guard: a retrain that diverges or learns nothing is retried, then dropped."""

from __future__ import annotations

import math

import pytest


def test_member_learned_compares_training_accuracy_with_its_trials() -> None:
    from search.final import member_learned

    trial = [{"train_accuracy": 0.5}, {"train_accuracy": 0.95}]
    # the bar is half way from the majority share (0.25) to the trial's last training accuracy: 0.6
    assert member_learned([{"train_accuracy": 0.99}], trial, 0.25)
    assert member_learned([{"train_accuracy": 0.61}], trial, 0.25)
    assert not member_learned([{"train_accuracy": 0.59}], trial, 0.25)
    assert not member_learned([{"train_accuracy": 0.246}], trial, 0.25)  # settled on one class
    assert not member_learned([{"train_accuracy": math.nan}], trial, 0.25)
    assert not member_learned([], trial, 0.25)
    # a trial that learned nothing sets no bar above the majority share; no trial history, a bar at 1
    assert member_learned([{"train_accuracy": 0.2}], [{"train_accuracy": 0.15}], 0.25)
    assert member_learned([{"train_accuracy": 0.24}], [{"train_accuracy": 0.25}], 0.25)
    assert not member_learned([{"train_accuracy": 0.6}], [], 0.25)
    assert member_learned([{"train_accuracy": 0.7}], [], 0.25)


@pytest.mark.slow
def test_members_that_diverge_or_do_not_learn_are_retried_at_another_seed_then_dropped() -> None:
    import ray

    from fer_core.config import TrainConfig
    from fer_core.data import load
    from fer_core.splits import make_splits
    from search.final import RESEED_OFFSET, retrain_members
    from search.tasks import Resources

    splits = make_splits(load("synthetic:300"), "subject")
    small = dict(conv_blocks=2, base_filters=8, dense_units=32, epochs=6, batch_size=16, normalize="standardize",
                 rotation=0.0, shift=0.0, shear=0.0, zoom=0.0, flip=False, seed=7)
    configs = [TrainConfig(**small, learning_rate=3e-3),  # learns
               TrainConfig(**small, learning_rate=1e-12),  # stays where it started: chance
               TrainConfig(**small, learning_rate=1e9, batch_norm=False),  # the loss leaves the numbers
               # a failure that is not a divergence: the network cannot be built on 48x48 faces
               TrainConfig(**{**small, "conv_blocks": 6, "kernel_size": 5, "padding": "valid"})]
    trials = [{"trial_id": name, "history": [{"train_accuracy": 0.5}]}
              for name in ("good", "frozen", "exploding", "unbuildable")]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        kept, dropped, extra = retrain_members(trials, configs, splits, Resources(),
                                               extra={"seed": TrainConfig(**small).to_dict()})
    finally:
        ray.shutdown()
    assert [m["trial"]["trial_id"] for m in kept] == ["good"] and kept[0]["attempts"] == 1
    assert kept[0]["config"].seed == 7 and len(kept[0]["result"]["history"]) == 6
    assert {d["trial_id"]: d["seeds"] for d in dropped} == {"frozen": [7, 7 + RESEED_OFFSET],
                                                            "exploding": [7, 7 + RESEED_OFFSET],
                                                            "unbuildable": [7, 7 + RESEED_OFFSET]}
    reasons = {d["trial_id"]: d["reason"] for d in dropped}
    assert reasons["frozen"].startswith("did not learn (final training accuracy")
    assert reasons["exploding"].startswith("diverged")
    assert reasons["unbuildable"].startswith("failed (") and "leaves no pixels" in reasons["unbuildable"]
    assert set(extra) == {"seed"} and 0.0 <= extra["seed"]["metrics"]["accuracy"] <= 1.0


def test_report_names_a_dropped_member_and_why() -> None:
    import numpy as np

    from fer_core.evaluate import evaluate_predictions
    from search.report import render_markdown

    labels = np.array([0, 1, 1, 0])
    test = evaluate_predictions(labels, np.array([0, 1, 0, 0]), ["anger", "happy"])
    member = {"trial_id": "kept1", "val_metric": 0.9, "test_accuracy": 0.75, "test_macro_f1": 0.73}
    report = {"name": "r", "data": "synthetic:4", "n_images": 4, "split": "subject", "n_train": 2, "n_val": 1,
              "n_test": 4, "metric": "val_accuracy", "trials_completed": 2, "trials_stopped_early": 0,
              "trials_failed": 0, "search_wall_clock_s": 1.0, "test": test, "seed_recipe_test": test,
              "seed_baseline_accuracy": 0.7, "ensemble": [member], "best_config": {}, "trials": [],
              "ensemble_dropped": [{"trial_id": "gone2", "reason": "diverged (loss became nan)", "seeds": [42, 1042]}]}
    markdown = render_markdown(report, {})
    assert "averages the class probabilities of 1 networks: the best trials' configs" in markdown and "| kept1 |" in markdown
    assert "Trial gone2 left the final model: its retrain diverged (loss became nan), at seeds 42, 1042." in markdown
    assert "left the final model" not in render_markdown({**report, "ensemble_dropped": []}, {})
