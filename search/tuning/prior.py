"""The built-in prior: a few configs that trained well on a large facial-expression data set,
tried first (after the seed's recipe, before the random start and TPE), and trained alone when
the time budget is too short for a search to pay.

A portfolio in the manner of Auto-sklearn's and AutoGluon's: chosen on FER2013's validation
faces (PublicTest), never its test faces; how, and with what figures: ``experiments/README.md``,
"The built-in prior". It applies to large data sets (:data:`search.settings.LARGE_DATA` training
faces), whose space holds every option its configs use; a small data set's search starts as before.
"""

from __future__ import annotations

import math
from typing import Any, Optional

from fer_core.config import TrainConfig
from fer_core.model import flops_per_face
from search.records import TrialRecord
from search.settings import SearchSettings
from search.tuning.space import INPUT_SHAPE, define_space, seed_point

# best first, in the large space's parameter names, the seed's recipe's values for the rest; each
# trains for the search's epoch budget. Ranked at the length a run too short to search trains its
# first config (about an hour on one thread): the mirror image only, 62.1% / 0.599 on PublicTest in
# 32 minutes, against 58.9% / 0.574 in 54 without it, which overfits after about 17 rounds; in 7
# minutes the order was the other (57.8% against 59.8%) ("The built-in prior")
PRIOR: tuple[dict[str, Any], ...] = (
    {"augment": True, "rotation": 0.0, "shift": 0.0, "shear": 0.0, "zoom": 0.0, "flip": True, "contrast": 0.0,
     "brightness": 0.0, "erasing": 0.0},  # the seed's network with the mirror image as its only augmentation
    {"augment": False},  # the seed's network without augmentation
)

# a training thread's floating-point rate, forward FLOPs x TRAIN_FLOPS_FACTOR per face trained: the
# seed's CNN at 669 FER2013 faces/s on 2 one-thread trials ("One trial on both cores, or one on
# each"); on a faster machine the search only starts at a shorter budget than it could
THREAD_FLOPS_PER_S = 27e9
TRAIN_FLOPS_FACTOR = 3  # a training step: the forward pass and the backward pass's two products
# the search pays from this many full-length trials of the prior's first config on its slots: the
# searches of 20 minutes and one hour on FER2013 (0.8 and 2.5 by this estimate) found nothing better
# than that config, two hours (5.0) a tie ("The built-in prior")
SEARCH_PAYS_TRIALS = 4
# without a search, a member beyond one a slot trains after the seed's recipe, on its slot, when the
# recipe (estimated) leaves at least this share of the time: a member of a few rounds weakens the mean
SEED_LEAVES_SHARE = 0.5


def prior_points(search: SearchSettings) -> list[dict[str, Any]]:
    """The prior's configs as points of this search's space: on a large data set from scratch with the
    search's ``prior`` builtin, each completed with the seed's values for what it does not say; else none."""
    if search.prior != "builtin" or not search.large or search.init is not None:
        return []
    import optuna

    points = []
    seed = seed_point(max_epochs=search.max_t, large=True)
    for params in PRIOR:
        trial = optuna.trial.FixedTrial({**seed, **params})
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


def training_seconds(config: TrainConfig, n_train: int, threads: int) -> float:
    """About how long ``config`` trains on ``n_train`` faces with ``threads`` threads, from its FLOPs
    (:func:`fer_core.model.flops_per_face`) and :data:`THREAD_FLOPS_PER_S`."""
    faces = config.epochs * config.images_per_epoch(n_train)
    return faces * flops_per_face(config, INPUT_SHAPE) * TRAIN_FLOPS_FACTOR / (THREAD_FLOPS_PER_S * threads)


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
    return (f"the search's {search_s:.0f} s hold about {fit:.1f} full-length trials of the prior's best config on "
            f"{search.slots} slot(s), fewer than the {SEARCH_PAYS_TRIALS} a search needs to pay")
