"""The built-in prior: a few configs that trained well on a large facial-expression data set,
tried first (after the seed's recipe, before the random start and TPE), and trained alone when
the time budget is too short for a search to pay: each member the config best at the faces it can
train in its time on the machine at hand.

A portfolio in the manner of Auto-sklearn's and AutoGluon's: chosen on FER2013's validation
faces (PublicTest), never its test faces; how, and with what figures: ``experiments/README.md``,
"The built-in prior". It applies to large data sets (:data:`search.settings.LARGE_DATA` training
faces), whose space holds every option its configs use; a small data set's search starts as before.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from fer_core.config import TrainConfig
from fer_core.model import flops_per_face
from search.records import TrialRecord
from search.settings import SearchSettings
from search.tuning.space import INPUT_SHAPE, define_space, seed_point


@dataclass(frozen=True)
class PriorConfig:
    """One config of the prior: its values in the large space's parameter names (the seed's recipe's
    for the rest), and the faces a member must be able to train for it to be the one trained alone
    (:func:`pack_members`): which config is best depends on how long its member trains; and the
    faces a member of it trains at most, ``member_faces``, where it does best."""

    params: dict[str, Any]
    alone_from_faces: float = 0.0
    member_faces: float = math.inf  # the most faces a member trains: where it does best on validation


# in the search's order (after the seed's recipe); each trains for the search's epoch budget there.
# Measured on PublicTest in faces trained, since rounds a second differ 2x between machines ("The
# built-in prior"): without augmentation the seed's CNN leads up to about 16-18 rounds (150k faces)
# and then learns its faces by heart; the mirror image holds that off (62.1% / 0.599 at 655k faces,
# 3.3 points over the wider one at 647k against its 352k); the wider network with light geometric
# augmentation leads at its 1.14M faces (+1.8 points, 62.7% / 0.586, against the mirror's 2.25M).
# A member trains at most where its config does best: the mirror image's 80 rounds (six seeds at
# 53-71 rounds 62.1-62.8%, against 60.9% at 275), the wider one's 1.2M faces (62.5% at 2.22M)
# ("More, shorter members")
PRIOR: tuple[PriorConfig, ...] = (
    PriorConfig({"augment": True, "rotation": 0.0, "shift": 0.0, "shear": 0.0, "zoom": 0.0, "flip": True,
                 "contrast": 0.0, "brightness": 0.0, "erasing": 0.0}, alone_from_faces=150_000, member_faces=655_360),
    # the seed's network without augmentation
    PriorConfig({"augment": False}, member_faces=147_456),
    PriorConfig({"base_filters": 48, "augment": True, "rotation": 10.0, "shift": 0.1, "shear": 0.0, "zoom": 0.1,
                 "flip": True, "contrast": 0.0, "brightness": 0.0, "erasing": 0.0}, alone_from_faces=1_000_000,
                member_faces=1_200_000),
)

# a training thread's floating-point rate, forward FLOPs x TRAIN_FLOPS_FACTOR per face trained: the
# seed's CNN at 669 FER2013 faces/s on 2 one-thread trials ("One trial on both cores, or one on
# each"). The unit of SEARCH_PAYS_TRIALS; a run that does not search measures its machine instead
# (fer_core.train.seed_faces_per_s: 830 faces/s a thread here in December 2026, 2.5 times this)
THREAD_FLOPS_PER_S = 27e9
TRAIN_FLOPS_FACTOR = 3  # a training step: the forward pass and the backward pass's two products
# the search pays from this many full-length trials of the prior's first config on its slots: the
# searches of 20 minutes, one hour and two hours on FER2013 (0.8, 2.5 and 5.0 by this estimate)
# found nothing better on validation than that config, which a run that does not search trains
# anyway ("The built-in prior", "Two hours without a search")
SEARCH_PAYS_TRIALS = 6
# without a search, a member trains only if its slot's time holds at least this share of its
# config's member length (search.final.tasks.train_and_score holds a late start to it too): a member of
# a few rounds adds nothing measurable to the mean ("Test-time views and short members") and costs the
# model a member's size and prediction time
MEMBER_LEAST_SHARE = 0.5


def prior_points(search: SearchSettings) -> list[dict[str, Any]]:
    """The prior's configs as points of this search's space: on a large data set from scratch with the
    search's ``prior`` builtin, each completed with the seed's values for what it does not say; else none."""
    if search.prior != "builtin" or not search.large or search.init is not None:
        return []
    import optuna

    points = []
    seed = seed_point(max_epochs=search.max_t, large=True)
    for entry in PRIOR:
        trial = optuna.trial.FixedTrial({**seed, **entry.params})
        define_space(trial, max_epochs=search.max_t, large=True)
        points.append(trial.params)
    return points


def prior_records(search: SearchSettings) -> list[TrialRecord]:
    """The prior's configs as records of trials that did not run (status ``prior``): what the final
    stage trains when the search is skipped (:func:`search_pays`), with every constant of the space."""
    import optuna

    records = []
    for i, point in enumerate(prior_points(search), start=1):
        trial = optuna.trial.FixedTrial(point)
        constants = define_space(trial, max_epochs=search.max_t, round_images=search.round_images or 0, large=True)
        records.append(TrialRecord(trial_id=f"prior{i}", status="prior", config={**trial.params, **constants}))
    return records


def faces_seconds(config: TrainConfig, faces: float, threads: int, flops_per_s: float = THREAD_FLOPS_PER_S) -> float:
    """About how long ``config`` takes to train ``faces`` faces with ``threads`` threads."""
    return faces * flops_per_face(config, INPUT_SHAPE) * TRAIN_FLOPS_FACTOR / (flops_per_s * threads)


def training_seconds(config: TrainConfig, n_train: int, threads: int,
                     flops_per_s: float = THREAD_FLOPS_PER_S) -> float:
    """About how long ``config`` trains on ``n_train`` faces with ``threads`` threads, from its FLOPs
    (:func:`fer_core.model.flops_per_face`) and a thread's ``flops_per_s``."""
    return faces_seconds(config, config.epochs * config.images_per_epoch(n_train), threads, flops_per_s)


def measured_flops_per_s(seed_faces_per_s: float, threads: int) -> float:
    """A thread's floating-point rate from the faces a second the seed's CNN trained on ``threads``
    threads (:func:`fer_core.train.seed_faces_per_s`), in :func:`training_seconds`' terms."""
    return seed_faces_per_s * flops_per_face(TrainConfig(), INPUT_SHAPE) * TRAIN_FLOPS_FACTOR / threads


@dataclass(frozen=True)
class PlannedMember:
    """A member of a run that does not search: the prior's config it trains (its seed and rounds
    set), the most seconds it may take, the slot it is planned on and when it starts there."""

    record: TrialRecord
    seconds: float
    slot: int
    start: float


def pack_members(records: Sequence[TrialRecord], starts: Sequence[float], ends: Sequence[float], threads: int,
                 flops_per_s: float = THREAD_FLOPS_PER_S, most: int = 5,
                 most_rounds: Optional[int] = None) -> list[PlannedMember]:
    """The members that the slots' times (slot ``i`` free from ``starts[i]`` to ``ends[i]`` seconds)
    train, in the order they start: the prior's configs (``records``, :func:`prior_records`) that a
    member reaches (its :attr:`PriorConfig.alone_from_faces`), the most demanding first, taken in turn
    (one asking no faces only when none else is reached), each member on the slot with the most
    time left for up to its config's :attr:`PriorConfig.member_faces` (and ``most_rounds`` rounds),
    or, when no other member would fit after it, for the slot's rest, shared evenly by as many
    members as it holds member lengths, rounded up, when each still gets its least. A member must
    reach its config's faces and :data:`MEMBER_LEAST_SHARE` of its member length (a member of a few
    rounds adds nothing measurable); a config trained again takes the next seed. At most ``most``
    members; at least one, the config asking the fewest faces on the longest slot, when none fits."""
    free = list(starts)

    def seconds_for(record: TrialRecord, faces: float) -> float:
        return faces_seconds(record.train_config, faces, threads, flops_per_s)

    def least(entry: PriorConfig, record: TrialRecord) -> float:
        return max(seconds_for(record, entry.alone_from_faces),
                   MEMBER_LEAST_SHARE * seconds_for(record, entry.member_faces))

    longest = max(e - f for f, e in zip(free, ends))
    pairs = list(zip(PRIOR, records))
    reached = sorted((pair for pair in pairs if least(*pair) <= longest), key=lambda pair: -pair[0].alone_from_faces)
    demanding = [pair for pair in reached if pair[0].alone_from_faces > 0]
    turn = demanding or reached[:1] or [min(pairs, key=lambda pair: pair[0].alone_from_faces)]
    smallest = min(least(e, r) for e, r in turn)  # the shortest member that could follow another
    planned: list[PlannedMember] = []
    trained: dict[str, int] = {}
    misses = 0
    while len(planned) < most and misses < len(turn):
        entry, record = turn[(len(planned) + misses) % len(turn)]
        slot = max(range(len(free)), key=lambda i: ends[i] - free[i])
        left = ends[slot] - free[slot]
        if planned and left < least(entry, record):
            misses += 1
            continue
        misses = 0
        length = min(left, seconds_for(record, entry.member_faces))
        if left - length < smallest:
            # nothing fits after it: the slot's rest, shared when each share still holds a least member
            # (a second, shorter member pays: "Test-time views and short members"); rounds bound each
            parts = math.ceil(left / length) if length > 0 else 1
            length = left / parts if parts > 1 and left / parts >= least(entry, record) else left
        config = record.train_config
        bounded = config.round_images and math.isfinite(entry.member_faces)  # the prior's data sets train in rounds
        rounds = math.ceil(entry.member_faces / config.round_images) if bounded else config.epochs
        rounds = min(rounds, most_rounds) if most_rounds else rounds
        again = trained.get(record.trial_id, 0)
        trained[record.trial_id] = again + 1
        changed = {**record.config, "epochs": rounds, "seed": record.config.get("seed", config.seed) + again}
        planned.append(PlannedMember(dataclasses.replace(record, config=changed), length, slot, free[slot]))
        free[slot] += length
    return sorted(planned, key=lambda member: (member.start, member.slot))


def trial_seconds(point: dict[str, Any], search: SearchSettings, n_train: int) -> float:
    """About how long ``point`` takes to train for the search's whole epoch budget on one of its slots."""
    config = TrainConfig.from_dict({k: v for k, v in point.items() if k != "augment"} | {
        "epochs": search.max_t, "round_images": search.round_images or 0})
    return training_seconds(config, n_train, search.resources.threads)


def search_pays(search: SearchSettings, points: list[dict[str, Any]], search_s: float,
                n_train: int) -> Optional[str]:
    """None when the search's ``search_s`` seconds, on its slots, hold :data:`SEARCH_PAYS_TRIALS`
    trials of the prior's first config at full length; otherwise why not, in words, for the log and
    the report. Without a prior (a small data set, ``--prior none``) the search always runs."""
    if not points or math.isinf(search_s):
        return None
    each = trial_seconds(points[0], search, n_train)
    fit = search_s * search.slots / each
    if fit >= SEARCH_PAYS_TRIALS:
        return None
    return (f"the search's {search_s:.0f} s hold about {fit:.1f} full-length trials of the prior's first config on "
            f"{search.slots} slot(s), fewer than the {SEARCH_PAYS_TRIALS} a search needs to pay")
