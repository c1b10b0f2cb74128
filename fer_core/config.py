"""The hyperparameters of one training run, as one frozen dataclass.

Defaults are the seed notebook's recipe (three conv blocks 32/64/128, dense 128, Adam,
rotation/shift/shear/zoom/flip augmentation, 15 epochs then 5 more at a lowered learning
rate). Field names are the search-space names: :mod:`search.space` samples a plain dict
of some of these fields and :meth:`TrainConfig.from_dict` turns it back into a config.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Any, Mapping

from fer_core.errors import ConfigError

SCHEDULES = ("two_phase", "cosine", "plateau", "constant")
POOLINGS = ("max", "avg")
HEADS = ("flatten", "gap")
PADDINGS = ("valid", "same")
CLASS_WEIGHTS = ("none", "balanced")
NORMALIZATIONS = ("none", "standardize", "equalize")  # per-image: zero mean, unit variance; histogram equalization
OPTIMIZERS = ("adam", "sgd")  # sgd: with Nesterov momentum (fer_core.train.SGD_MOMENTUM)


@dataclass(frozen=True)
class TrainConfig:
    """Architecture, augmentation and optimisation settings of one training run.

    The defaults reproduce the seed notebook exactly; every other point of the search
    space is a ``dataclasses.replace`` of it. Augmentation magnitudes of 0 turn that
    augmentation off. ``epochs`` counts both phases of the two-phase schedule, in passes
    over the training faces, or in rounds of ``round_images`` faces when that is set (on a
    large data set a round is a fraction of a pass: :meth:`images_per_epoch`).
    """

    # input
    normalize: str = "none"  # "standardize" evens out lighting per face, inside the model
    # architecture
    conv_blocks: int = 3
    base_filters: int = 32
    filter_growth: float = 2.0  # filters of block i = base_filters * filter_growth**i
    convs_per_block: int = 1
    residual: bool = False  # each block's input added to its convolutions' output (a 1x1 projection where widths differ)
    separable: bool = False  # blocks after the first convolve depthwise-separably (Xception's; a first block is the stem)
    kernel_size: int = 3
    padding: str = "valid"  # the seed used Keras' default
    batch_norm: bool = False
    pooling: str = "max"
    conv_dropout: float = 0.0
    head: str = "flatten"
    dense_units: int = 128
    dense_dropout: float = 0.0
    l2: float = 0.0
    # augmentation (training only)
    rotation: float = 20.0  # degrees
    shift: float = 0.2  # fraction of width/height
    shear: float = 0.2  # degrees, as ImageDataGenerator's shear_range: the seed's 0.2 is barely any
    zoom: float = 0.2
    flip: bool = True
    contrast: float = 0.0
    brightness: float = 0.0
    erasing: float = 0.0  # up to this chance per image of one noise-filled rectangle, 2-15% of the face
    mixup: float = 0.0  # Beta(a, a) of mixup: each face blended with another of its batch, labels alike; 0 is off
    # optimisation
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    batch_size: int = 32
    epochs: int = 20
    round_images: int = 0  # an epoch is this many faces (the data repeated, reshuffled); 0: one pass over them
    schedule: str = "two_phase"
    phase1_share: float = 0.75  # 15 of the seed's 20 epochs at the base rate
    phase2_factor: float = 0.1  # the seed lowered the rate tenfold for its last epochs
    label_smoothing: float = 0.0
    class_weight: str = "none"
    seed: int = 42
    # fine-tuning a pretrained network (fer_core.transfer); without one these change nothing
    frozen_blocks: int = 0  # the first this many conv blocks are held still ...
    frozen_share: float = 1.0  # ... for this share of the epochs
    backbone_lr_share: float = 1.0  # the transferred layers learn at this share of the head's rate

    def __post_init__(self) -> None:
        _check_positive_int(self, "conv_blocks", "convs_per_block", "kernel_size",
                            "base_filters", "dense_units", "batch_size", "epochs")
        _check_choice(self, "schedule", SCHEDULES)
        _check_choice(self, "pooling", POOLINGS)
        _check_choice(self, "head", HEADS)
        _check_choice(self, "padding", PADDINGS)
        _check_choice(self, "class_weight", CLASS_WEIGHTS)
        _check_choice(self, "normalize", NORMALIZATIONS)
        _check_choice(self, "optimizer", OPTIMIZERS)
        for name in ("conv_dropout", "dense_dropout", "label_smoothing"):
            _check_range(self, name, 0.0, 1.0, hi_open=True)
        for name in ("shift", "zoom", "contrast", "brightness", "erasing"):
            _check_range(self, name, 0.0, 1.0)
        _check_range(self, "shear", 0.0, 45.0)
        _check_range(self, "rotation", 0.0, 180.0)
        _check_range(self, "phase1_share", 0.0, 1.0)
        _check_range(self, "phase2_factor", 0.0, 1.0)
        _check_range(self, "frozen_share", 0.0, 1.0)
        _check_range(self, "backbone_lr_share", 0.0, 1.0)
        if isinstance(self.frozen_blocks, bool) or not isinstance(self.frozen_blocks, int) or \
                not 0 <= self.frozen_blocks <= self.conv_blocks:
            raise ConfigError(f"config field frozen_blocks={self.frozen_blocks!r}: expected an integer from 0 to "
                              f"conv_blocks ({self.conv_blocks})")
        if self.phase2_factor == 0:
            raise ConfigError("config field phase2_factor=0: expected a number in (0, 1]; 0 would stop learning")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ConfigError(f"config field learning_rate={self.learning_rate!r}: expected a positive number")
        if not (0 <= self.mixup <= 10):
            raise ConfigError(f"config field mixup={self.mixup!r}: expected a number in [0, 10] (0: no mixup)")
        if isinstance(self.round_images, bool) or not isinstance(self.round_images, int) or self.round_images < 0:
            raise ConfigError(f"config field round_images={self.round_images!r}: expected an integer >= 0 "
                              "(0: an epoch is one pass over the training faces)")
        if self.l2 < 0:
            raise ConfigError(f"config field l2={self.l2!r}: expected a number >= 0")
        if self.filter_growth <= 0:
            raise ConfigError(f"config field filter_growth={self.filter_growth!r}: expected a number > 0")

    @property
    def filters(self) -> tuple[int, ...]:
        """Filters of each conv block, rounded to whole numbers and at least 1."""
        return tuple(max(1, int(round(self.base_filters * self.filter_growth ** i)))
                     for i in range(self.conv_blocks))

    @property
    def augments(self) -> bool:
        """Whether any augmentation is on."""
        return any((self.rotation, self.shift, self.shear, self.zoom, self.flip,
                    self.contrast, self.brightness, self.erasing))

    def images_per_epoch(self, n_train: int) -> int:
        """Faces one epoch trains on, with ``n_train`` training faces: all of them, or a round of
        ``round_images``."""
        return self.round_images if self.round_images else n_train

    def to_dict(self) -> dict[str, Any]:
        """A plain JSON-ready dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "TrainConfig":
        """Build a config from a dict, taking defaults for missing fields.

        Unknown keys are an error (a typo in a search space must not be silently
        ignored); values are coerced to each field's type, so that numpy scalars from
        Optuna and floats from JSON round-trip.
        """
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"unknown config field(s) {', '.join(unknown)}; expected some of {', '.join(known)}")
        kwargs = {}
        for name, value in values.items():
            kwargs[name] = _coerce(name, value, _DEFAULT_TYPES[name])
        return cls(**kwargs)


def _field_types() -> dict[str, type]:
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    return {name: type(value) for name, value in defaults.items()}


def _coerce(name: str, value: Any, kind: type) -> Any:
    try:
        if kind is bool:
            if isinstance(value, str):
                if value.lower() in ("true", "1", "yes"):
                    return True
                if value.lower() in ("false", "0", "no"):
                    return False
                raise ValueError(value)
            return bool(value)
        if kind is int:
            as_float = float(value)
            if as_float != int(as_float):
                raise ValueError(value)
            return int(as_float)
        if kind is float:
            return float(value)
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"config field {name}={value!r}: expected a {kind.__name__}") from None


def _check_positive_int(cfg: TrainConfig, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"config field {name}={value!r}: expected an integer >= 1")


def _check_choice(cfg: TrainConfig, name: str, choices: tuple[str, ...]) -> None:
    value = getattr(cfg, name)
    if value not in choices:
        raise ConfigError(f"config field {name}={value!r}: expected one of {', '.join(choices)}")


def _check_range(cfg: TrainConfig, name: str, lo: float, hi: float, hi_open: bool = False) -> None:
    value = getattr(cfg, name)
    ok = isinstance(value, (int, float)) and lo <= value and (value < hi if hi_open else value <= hi)
    if not ok:
        bracket = ")" if hi_open else "]"
        raise ConfigError(f"config field {name}={value!r}: expected a number in [{lo}, {hi}{bracket}")


_DEFAULT_TYPES = _field_types()
