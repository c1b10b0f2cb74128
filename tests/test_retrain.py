"""The final stage: sized to what the budget left it, and its members' guard (a retrain that
diverges or learns nothing is retried, then dropped)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from search.budget import TASK_OVERHEAD_S
from search.final.confirm import estimated_seconds
from search.final.retrain import plan_final
from search.records import TrialRecord
from search.settings import FinalSettings
from search.tuning.space import seed_point


def test_member_learned_compares_training_accuracy_with_its_trials() -> None:
    from search.final.retrain import member_learned

    trial = [{"train_accuracy": 0.5}, {"train_accuracy": 0.95}]
    # the bar is half way from the majority share (0.25) to the trial's last training accuracy: 0.6
    assert member_learned([{"train_accuracy": 0.99}], trial, 0.25)
    assert member_learned([{"train_accuracy": 0.61}], trial, 0.25)
    assert not member_learned([{"train_accuracy": 0.59}], trial, 0.25)
    assert not member_learned([{"train_accuracy": 0.246}], trial, 0.25)  # settled on one class
    assert not member_learned([{"train_accuracy": math.nan}], trial, 0.25)
    assert not member_learned([], trial, 0.25)
    # a trial that learned nothing sets no bar above the majority share
    assert member_learned([{"train_accuracy": 0.2}], [{"train_accuracy": 0.15}], 0.25)
    assert member_learned([{"train_accuracy": 0.24}], [{"train_accuracy": 0.25}], 0.25)
    # a config that never ran as a trial (the prior's): a quarter of the way to 100%, 0.4375
    assert not member_learned([{"train_accuracy": 0.43}], [], 0.25)
    assert member_learned([{"train_accuracy": 0.45}], [], 0.25)


@pytest.mark.slow
def test_members_that_diverge_or_do_not_learn_are_retried_at_another_seed_then_dropped() -> None:
    import ray

    from fer_core.config import TrainConfig
    from fer_core.data import load
    from fer_core.splits import make_splits
    from search.final.retrain import RESEED_OFFSET, retrain_members
    from search.settings import Resources

    splits = make_splits(load("synthetic:300"), "subject")
    small = dict(conv_blocks=2, base_filters=8, dense_units=32, epochs=6, batch_size=16, normalize="standardize",
                 rotation=0.0, shift=0.0, shear=0.0, zoom=0.0, flip=False, seed=7)
    configs = [TrainConfig(**small, learning_rate=3e-3),  # learns
               TrainConfig(**small, learning_rate=1e-12),  # stays where it started: chance
               TrainConfig(**small, learning_rate=1e9, batch_norm=False),  # the loss leaves the numbers
               # a failure that is not a divergence: the network cannot be built on 48x48 faces
               TrainConfig(**{**small, "conv_blocks": 6, "kernel_size": 5, "padding": "valid"})]
    trials = [TrialRecord(name, "completed", {}, history=({"train_accuracy": 0.5},))
              for name in ("good", "frozen", "exploding", "unbuildable")]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        kept, dropped, extra = retrain_members(trials, configs, splits, Resources(),
                                               extra={"seed": TrainConfig(**small).to_dict()})
    finally:
        ray.shutdown()
    assert [m.trial.trial_id for m in kept] == ["good"] and kept[0].attempts == 1
    assert kept[0].config.seed == 7 and len(kept[0].history) == 6 and kept[0].result["weights"]
    assert {d["trial_id"]: d["seeds"] for d in dropped} == {"frozen": [7, 7 + RESEED_OFFSET],
                                                            "exploding": [7, 7 + RESEED_OFFSET],
                                                            "unbuildable": [7, 7 + RESEED_OFFSET]}
    reasons = {d["trial_id"]: d["reason"] for d in dropped}
    assert reasons["frozen"].startswith("did not learn (final training accuracy")
    assert reasons["exploding"].startswith("diverged")
    assert reasons["unbuildable"].startswith("failed (") and "leaves no pixels" in reasons["unbuildable"]
    assert set(extra) == {"seed"} and 0.0 <= extra["seed"]["metrics"]["accuracy"] <= 1.0


def _two_small_members_to_a_deadline(trial_ids, seconds: float, seed_epochs: int, lengths=None):
    """Two small configs (seeds 1 and 2, up to 400 epochs) and the seed's recipe (``seed_epochs``)
    trained on two slots of a local Ray to a deadline ``seconds`` (and a task's overhead) away;
    returns the final model, when it began and the deadline."""
    import ray

    from fer_core.data import load
    from fer_core.splits import make_splits
    from search.budget import now
    from search.final.retrain import build_final_model
    from search.settings import Resources

    splits = make_splits(load("synthetic:300"), "subject")
    small = dict(conv_blocks=2, base_filters=8, dense_units=32, batch_size=16, normalize="standardize",
                 augment=False, learning_rate=3e-3)
    members = [TrialRecord(trial_id, "prior", {**seed_point(), **small, "epochs": 400, "seed": seed})
               for seed, trial_id in enumerate(trial_ids, start=1)]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        began = now()
        deadline = began + TASK_OVERHEAD_S + seconds
        final = build_final_model(members, splits, FinalSettings(ensemble=2, epochs_scale=1.0, seed_epochs=seed_epochs,
                                                                 inputs=("standardize",)),
                                  Resources(), deadline=deadline, slots=2, lengths=lengths)
    finally:
        ray.shutdown()
    return final, began, deadline


@pytest.mark.slow
def test_trained_to_a_deadline_the_seed_recipe_starts_before_a_member_beyond_its_free_slots() -> None:
    """Two members and the seed's recipe on two slots, all to one deadline: the seed's recipe starts
    at once and the second member after it, in the time it left; were the members first, the seed's
    recipe would start when one of them ends, near the deadline, and train one epoch."""
    final, began, deadline = _two_small_members_to_a_deadline(("prior1", "prior2"), 40, seed_epochs=2)
    # when it started, not the epochs it trained, which beside pytest's other worker a Ray worker's slow
    # start cut to one: at once it starts within a second here; after a member, about halfway (29 s of 52)
    assert final.seed_recipe["started"] - began < (deadline - began) / 3
    assert all(1 <= len(m.history) < 400 for m in final.kept)  # fitted to the deadline
    # the second member trained in the seconds the seed's recipe left: kept, or (a few epochs on a busy
    # machine) dropped for not learning, never failed
    short = [d["trial_id"] for d in final.dropped if d["reason"].startswith("did not learn")]
    assert sorted([m.trial.trial_id for m in final.kept] + short) == ["prior1", "prior2"]


@pytest.mark.slow
def test_members_planned_one_after_another_on_a_slot_each_train_in_their_length() -> None:
    """Two members with lengths of 20 s beside the seed's recipe, all before a deadline 80 s away:
    each ends in its length (its schedule fitted to it), not at the deadline, so that a member
    planned after another on its slot starts in time. (Which of the three Ray starts first is not
    fixed: a cold worker's lease can reorder them.)"""
    final, _, _ = _two_small_members_to_a_deadline(("prior1", "prior1"), 80, seed_epochs=400,
                                                   lengths=[TASK_OVERHEAD_S + 20] * 2)
    # a member of 20 s beside pytest's other worker may train too few epochs to learn: dropped for
    # that (and retried), never failed or skipped; at least one is kept
    short = [d["trial_id"] for d in final.dropped if d["reason"].startswith("did not learn")]
    assert final.kept and len(final.kept) + len(short) == 2 and len(final.dropped) == len(short)
    for member in final.kept:
        assert 1 <= len(member.history) < 400
        # trained to the deadline instead, each would have taken most of its 80 s
        assert sum(row["train_seconds"] for row in member.history) < 30


def test_a_member_that_starts_too_late_for_its_length_is_skipped_unless_it_has_saved_state(tmp_path) -> None:
    """A member planned for 60 s that starts 5 s before the deadline (its slot's earlier trainings ran
    long) does not train: a few epochs would weaken the ensemble's mean. One that has a saved state
    (an interrupted run resumed) goes on from it: finished work is not thrown away."""
    from fer_core.config import TrainConfig
    from fer_core.synthetic import make_faces
    from search.budget import now
    from search.final.tasks import train_and_score

    faces = make_faces(120, seed=0)
    config = TrainConfig(conv_blocks=2, base_filters=8, dense_units=32, batch_size=32, epochs=1).to_dict()
    late = train_and_score(config, faces, faces, 1, deadline=now() + 5, seconds=60)
    assert set(late) == {"skipped", "started"} and "planned 60 s" in late["skipped"]

    folder = str(tmp_path / "member")
    first = train_and_score(config, faces, faces, 1, deadline=now() + 600, seconds=60, checkpoint=folder)
    assert len(first["history"]) == 1 and first["resumed_from_epoch"] == 0
    again = train_and_score(config, faces, faces, 1, deadline=now() + 5, seconds=60, checkpoint=folder)
    assert "skipped" not in again and again["resumed_from_epoch"] == 1
    assert all(np.array_equal(a, b) for a, b in zip(again["weights"], first["weights"]))


def _trial(trial_id: str, seconds: float, epochs: int = 4, **config) -> TrialRecord:
    return TrialRecord(trial_id, "completed", {**seed_point(), "epochs": epochs, **config},
                       history=({"train_seconds": seconds, "val_seconds": 0.0},) * 3)


def test_the_final_stage_shrinks_to_its_share_epochs_first_then_members() -> None:
    seed = _trial("seed", 1.0, epochs=16)
    members = [_trial(f"m{i}", 2.0, dense_units=128 + i) for i in range(5)]
    trials = [seed, *members]
    default = FinalSettings()
    # each member: 4 epochs x 3 x 2 s (+ overhead) on as many faces as its trial saw
    planned, estimate = plan_final(trials, members, default, n_rest=100, n_train=100, slots=2, seconds=math.inf)
    assert planned == default and estimate > 0
    generous, _ = plan_final(trials, members, default, 100, 100, 2, seconds=estimate)
    assert generous == default
    tighter, cost = plan_final(trials, members, default, 100, 100, 2, seconds=estimate * 0.85)
    assert (tighter.ensemble, tighter.epochs_scale) == (5, 2.0) and cost <= estimate * 0.85
    tight, cost = plan_final(trials, members, default, 100, 100, 2, seconds=estimate * 0.45)
    assert tight.ensemble < 5 and cost <= estimate * 0.45
    # one member for the share of its trial's epochs that fits; at least one epoch, whatever the budget
    short, cost = plan_final(trials, members, default, 100, 100, 2, seconds=15.0)
    assert short.ensemble == 1 and short.epochs_scale < 1.0 and cost <= 15.0
    hopeless, _ = plan_final(trials, members, default, 100, 100, 2, seconds=1.0)
    assert hopeless.ensemble == 1 and hopeless.epochs_scale < 1.0


def test_a_seed_recipe_too_long_for_the_share_trains_fewer_of_its_epochs() -> None:
    seed = _trial("seed", 10.0, epochs=16)  # 20 epochs of 10 s: 200 s alone
    members = [_trial("m0", 1.0)]
    planned, cost = plan_final([seed, *members], members, FinalSettings(), 100, 100, slots=2, seconds=100.0)
    assert planned.seed_epochs is not None and 1 <= planned.seed_epochs < 20 and cost <= 100.0
    unbounded, _ = plan_final([seed, *members], members, FinalSettings(), 100, 100, slots=2, seconds=math.inf)
    assert unbounded.seed_epochs is None


def test_trials_that_measured_no_epoch_do_not_pull_the_typical_epoch_time_down() -> None:
    """Without a seed trial (a fine-tuning search, say) the seed's recipe is costed at the typical
    epoch time of the trials that measured one; failed ones measured nothing."""
    members = [_trial("m0", 3.0, dense_units=200), _trial("m1", 3.0, dense_units=201)]
    failed = [TrialRecord(f"f{i}", "failed", {"dense_units": 300 + i}) for i in range(5)]
    alone, cost_alone = plan_final(members, members[:1], FinalSettings(ensemble=1), 100, 100, slots=1, seconds=math.inf)
    with_failed, cost = plan_final([*members, *failed], members[:1], FinalSettings(ensemble=1), 100, 100, slots=1,
                                   seconds=math.inf)
    assert cost == cost_alone and cost >= 20 * 3.0  # the seed's 20 epochs at the typical 3 s


def test_a_training_in_rounds_costs_the_same_on_more_faces_and_one_in_passes_more() -> None:
    """The confirmation's folds and the final model train on more faces than the trial did: a
    pass over them takes longer, a round of a large data set's faces does not."""
    history = [{"train_seconds": 10.0, "val_seconds": 0.0}] * 3
    passes = TrialRecord("p", "completed", {**seed_point(), "epochs": 16}, history=tuple(history))
    rounds = TrialRecord("r", "completed", {**seed_point(), "epochs": 57, "round_images": 8192}, history=tuple(history))
    assert passes.image_seconds(20000) == pytest.approx(10 / 20000)
    assert rounds.image_seconds(20000) == pytest.approx(10 / 8192)
    # a 3-fold confirmation over 30,000 faces: folds of 20,000
    assert estimated_seconds(passes, 3, 30000, 10000) == pytest.approx(16 * 20.0 + TASK_OVERHEAD_S)
    assert estimated_seconds(rounds, 3, 30000, 10000) == pytest.approx(57 * 10.0 + TASK_OVERHEAD_S)
    # the final model on twice the faces: the member in rounds costs the same, the seed's recipe (in passes) twice
    settings = FinalSettings(ensemble=1, epochs_scale=1.0, inputs=("standardize",))
    _, small = plan_final([passes, rounds], [rounds], settings, n_rest=20000, n_train=20000, slots=1, seconds=math.inf)
    _, large = plan_final([passes, rounds], [rounds], settings, n_rest=40000, n_train=20000, slots=1, seconds=math.inf)
    seed_recipe_s = 20 * 10.0  # its 20 epochs at the seed trial's 10 s a pass of 20,000
    assert small == pytest.approx(57 * 10.0 + seed_recipe_s + 2 * TASK_OVERHEAD_S)
    assert large == pytest.approx(57 * 10.0 + 2 * seed_recipe_s + 2 * TASK_OVERHEAD_S)
