"""The search space: the one place that says what the search may vary, and how far.

It is an Optuna define-by-run function over :class:`fer_core.config.TrainConfig` field
names, so conditional choices stay honest: augmentation magnitudes exist only when
augmentation is on. The seed notebook's recipe is :func:`seed_point`, which the search
evaluates first, so its best trial is never worse than the seed on validation.

What the space leaves out, it leaves out on evidence. In three 50-trial CK+ searches
(seeds 0, 1, 2; subject split, 16-epoch budget) no trial with a global-average-pooling
head (19 trials), a batch of 128 (13), 4 or 5 conv blocks (31), 64 dense units (13) or a
cosine or plateau schedule (61) reached 90% validation accuracy: 0 of the 82 trials with
any of them, against 20 of the other 68. On a few hundred faces and 16 epochs they
cannot train (a batch of 128 is 5 steps an epoch), and each random start-up trial spent
on them taught the sampler less.
The space keeps the seed recipe's flatten head and two-phase schedule, and searches the
schedule's share and factor.

Those exclusions are a rule of size: on a large data set (:data:`LARGE_DATA` training faces
or more, as FER2013's 28,709) a batch of 128 is hundreds of steps a pass, and a trial's budget
holds enough faces for a fourth block, a global-average-pooling head and the cosine schedule
that the published FER2013 networks use, so the large space searches them too
(``experiments/README.md``, "FER2013 in rounds", has what they did there).

Every trial standardizes each face (zero mean, unit variance, inside the model). In five
50-trial CK+ searches (subject split) none of the 81 trials on raw pixels reached 90%
validation accuracy, against 36 of the 169 on standardized faces; half of the random
start-up trials went to raw pixels. The seed's recipe is therefore tried first on
standardized faces too (the report still tests the recipe itself, on raw pixels).

The optimizer stays the seed's Adam. SGD with Nesterov momentum (``TrainConfig.optimizer``,
rates 1e-3 to 5e-2) was searched beside it in one 50-trial CK+ search (seed 1): its 9
trials reached at most 87.8% validation, against 8 of the 41 Adam trials at 90% or more,
and the run tested at 91.3%, within the default's runs at that seed.

Residual shortcuts (``TrainConfig.residual``) were searched beside plain blocks in one
50-trial CK+ search (seed 1): 1 of its 17 residual trials reached 90% validation, against 8
of its 33 plain ones; the run tested 3.1 points below the default's at that seed and took
39.6 minutes, the wider networks TPE drifted to included.

The left-out settings stay :class:`TrainConfig` choices, for the API.
"""

from __future__ import annotations

from typing import Any, Optional

from fer_core.config import TrainConfig
from fer_core.errors import ConfigError
from fer_core.model import check_fits

INPUT_SHAPE = (48, 48, 1)
# on a large data set a trial's epoch is a round of this many faces: on one thread 7-12 s of the seed's
# CNN and 4-43 s of the others a 20-minute FER2013 search tried, against 31-42 s and 78-141 s for a pass
# over its 28,709 faces; 4x the faces CK+'s trials see before their first rung ("FER2013 in rounds" in
# experiments/README.md)
ROUND_IMAGES = 8192
LARGE_DATA = 2 * ROUND_IMAGES  # training faces from which trials run in rounds and the space is the large one


def is_large(n_train: int) -> bool:
    """Whether ``n_train`` training faces make a large data set (:data:`LARGE_DATA` or more)."""
    return n_train >= LARGE_DATA


def round_images(n_train: int) -> int:
    """Faces in a trial's epoch on ``n_train`` training faces: :data:`ROUND_IMAGES` on a large data
    set (a pass holds at least two rounds), else 0 (an epoch is a pass, as on CK+'s 630 faces)."""
    return ROUND_IMAGES if is_large(n_train) else 0


def define_space(trial: Any, max_epochs: int, architecture: Optional[dict[str, Any]] = None,
                 round_images: int = 0, large: bool = False) -> dict[str, Any]:
    """Sample one configuration from ``trial`` (an Optuna trial or Tune's captor).

    Returns the constants that complete the config: the epoch budget (``max_epochs`` epochs of
    ``round_images`` faces when that is set), and ``padding`` turned to ``same`` where ``valid``
    padding would shrink the feature map away (so no trial is spent on a network that cannot be
    built). ``large``: the space of a large data set (:data:`LARGE_DATA` training faces or more),
    which also searches what the small one leaves out. With the ``architecture`` of a pretrained
    network (:mod:`fer_core.transfer`) the space is :func:`define_finetuning`'s.
    """
    rounds = {"round_images": round_images} if round_images else {}
    if architecture is not None:
        return define_finetuning(trial, max_epochs, architecture) | rounds
    # architecture
    conv_blocks = trial.suggest_int("conv_blocks", 2, 4 if large else 3)
    trial.suggest_categorical("base_filters", [16, 32, 48, 64])
    trial.suggest_categorical("filter_growth", [1.0, 1.5, 2.0])
    convs_per_block = trial.suggest_int("convs_per_block", 1, 2)
    kernel_size = trial.suggest_categorical("kernel_size", [3, 5])
    padding = trial.suggest_categorical("padding", ["same", "valid"])
    trial.suggest_categorical("batch_norm", [True, False])
    trial.suggest_categorical("pooling", ["max", "avg"])
    trial.suggest_float("conv_dropout", 0.0, 0.5)
    trial.suggest_categorical("dense_units", [128, 256, 512])
    trial.suggest_float("dense_dropout", 0.0, 0.6)
    trial.suggest_float("l2", 1e-6, 1e-3, log=True)
    constants: dict[str, Any] = {"epochs": max_epochs, "normalize": "standardize", **rounds}
    if large:
        trial.suggest_categorical("head", ["flatten", "gap"])
    else:
        constants.update(head="flatten", schedule="two_phase")
    _augmentation(trial, constants)
    _optimisation(trial, large)
    if padding == "valid" and not _fits(conv_blocks, convs_per_block, kernel_size):
        constants["padding"] = "same"
    return constants


def define_finetuning(trial: Any, max_epochs: int, architecture: dict[str, Any]) -> dict[str, Any]:
    """The fine-tuning space: the pretrained ``architecture`` stays; searched are how many of its
    conv blocks are held still and for which share of the epochs, the transferred layers'
    learning rate as a share of the new head's, the epochs (from a quarter of ``max_epochs``:
    a network that already knows faces may need few), dropout, L2, augmentation and the
    optimisation."""
    trial.suggest_int("epochs", max(1, max_epochs // 4), max_epochs)
    if trial.suggest_int("frozen_blocks", 0, architecture["conv_blocks"]):
        trial.suggest_float("frozen_share", 0.2, 1.0)
    trial.suggest_float("backbone_lr_share", 0.01, 1.0, log=True)
    trial.suggest_float("conv_dropout", 0.0, 0.5)
    trial.suggest_float("dense_dropout", 0.0, 0.6)
    trial.suggest_float("l2", 1e-6, 1e-3, log=True)
    constants: dict[str, Any] = {**architecture, "schedule": "two_phase"}
    _augmentation(trial, constants)
    _optimisation(trial)
    return constants


def _augmentation(trial: Any, constants: dict[str, Any]) -> None:
    """All off, or each magnitude searched."""
    if trial.suggest_categorical("augment", [True, False]):
        trial.suggest_float("rotation", 0.0, 30.0)
        trial.suggest_float("shift", 0.0, 0.2)
        trial.suggest_float("shear", 0.0, 15.0)  # degrees
        trial.suggest_float("zoom", 0.0, 0.3)
        trial.suggest_categorical("flip", [True, False])
        trial.suggest_float("contrast", 0.0, 0.4)
        trial.suggest_float("brightness", 0.0, 0.3)
        trial.suggest_float("erasing", 0.0, 0.5)
    else:
        constants.update(rotation=0.0, shift=0.0, shear=0.0, zoom=0.0, flip=False, contrast=0.0, brightness=0.0,
                         erasing=0.0)


def _optimisation(trial: Any, large: bool = False) -> None:
    trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True)
    trial.suggest_categorical("batch_size", [16, 32, 64, 128] if large else [16, 32, 64])
    if not large or trial.suggest_categorical("schedule", ["two_phase", "cosine"]) == "two_phase":
        trial.suggest_float("phase1_share", 0.5, 0.9)  # two phases: this share of the epochs at the base rate,
    trial.suggest_float("phase2_factor", 0.03, 0.3, log=True)  # the rest at the rate times this (cosine: its floor)
    trial.suggest_float("label_smoothing", 0.0, 0.2)
    trial.suggest_categorical("class_weight", ["none", "balanced"])


def seed_point(architecture: Optional[dict[str, Any]] = None, max_epochs: Optional[int] = None,
               large: bool = False) -> dict[str, Any]:
    """The seed notebook's recipe in the space's own parameter names (evaluated first).

    The names are the ones :func:`define_space` asks for, answered from the seed's
    config, so the point follows the space when the space changes. What the space holds
    constant (standardized input) it holds for this point too. In the fine-tuning space
    it is the seed's training recipe on the pretrained network, every layer learning, for
    ``max_epochs``."""
    import optuna

    seed = TrainConfig()
    epochs = max_epochs or seed.epochs
    # l2: the space's floor; the seed used none, and L2 is searched on a log scale
    trial = optuna.trial.FixedTrial({**seed.to_dict(), "augment": True, "l2": 1e-6, "epochs": epochs})
    define_space(trial, max_epochs=epochs, architecture=architecture, large=large)
    return trial.params


def to_config(params: dict[str, Any]) -> TrainConfig:
    """A sampled parameter dict (from Tune) as a :class:`TrainConfig`; ``augment`` is a
    switch of the space, not a config field."""
    return TrainConfig.from_dict({k: v for k, v in params.items() if k != "augment"})


def _fits(conv_blocks: int, convs_per_block: int, kernel_size: int) -> bool:
    probe = TrainConfig(conv_blocks=conv_blocks, convs_per_block=convs_per_block, kernel_size=kernel_size,
                        padding="valid")
    try:
        check_fits(probe, INPUT_SHAPE)
    except ConfigError:
        return False
    return True
