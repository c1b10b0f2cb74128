"""Fine-tuning from a trained FER Tune model: its network, a new head, per-layer learning rates.

A model FER Tune exported (``best/``: ``model.keras`` and ``model_card.json``; or ``builtin``, the
FER2013 model bundled with FER Tune) holds the networks of its final ensemble; the first is taken. :func:`load_pretrained` reads its
architecture (the card's config) and its weights, all but the classifier's. A fine-tuned
network (:func:`build_finetuned`) is the same architecture with those weights and a new
``probabilities`` layer for the new data set's classes; dropout and L2 do not change the
weights' shapes, so they stay free to search. Its optimizer (:class:`FineTuneAdam`) scales
the learning rate of the transferred layers by ``backbone_lr_share`` and holds the first
``frozen_blocks`` conv blocks still (rate 0) for the first ``frozen_share`` of the epochs.
Held still, not made untrainable: Keras would need the model compiled again mid-training,
and a checkpointed trial resumes with its optimizer's step count, so the schedule carries over.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from fer_core.bundled import BUILTIN, bundled_model_dir
from fer_core.config import TrainConfig
from fer_core.errors import ConfigError, FerInputError
from fer_core.export import CARD_FILE, KERAS_FILE, read_card
from fer_core.model import build_cnn
from fer_core.runtime import configure_tensorflow

HEAD = "probabilities"  # the one layer a fine-tuned network does not take over
# what the pretrained network fixes; everything else in TrainConfig is the fine-tuning's own
ARCHITECTURE = ("normalize", "conv_blocks", "base_filters", "filter_growth", "convs_per_block", "residual", "separable",
                "kernel_size", "padding", "batch_norm", "pooling", "head", "dense_units")


@dataclass(frozen=True)
class Pretrained:
    """A trained network to start from: where it came from, its architecture and its weights."""

    source: str  # the path given, resolved
    config: TrainConfig  # the network's own config; its ARCHITECTURE fields are the fine-tuning's
    weights: dict[str, list[np.ndarray]] = field(repr=False)  # by layer name, every layer but HEAD
    card: dict[str, Any] = field(default_factory=dict)  # what the report and model card say about it

    def architecture(self) -> dict[str, Any]:
        """The :data:`ARCHITECTURE` fields of the network's config: what a fine-tuning keeps."""
        return {name: getattr(self.config, name) for name in ARCHITECTURE}

    def summary(self) -> dict[str, Any]:
        """What a report or model card records: the source, its data and its test figures."""
        return {"source": self.source, **self.card, "architecture": self.architecture()}


def resolve_init(path: str | Path) -> Path:
    """``--init``'s value as a path: :data:`fer_core.bundled.BUILTIN` is the FER2013 model bundled with
    FER Tune (a :class:`ConfigError` naming ``--init`` when it is not there), anything else a path."""
    if str(path) != BUILTIN:
        return Path(path)
    try:
        return bundled_model_dir()
    except ConfigError as exc:
        raise ConfigError(f"--init {BUILTIN}: {exc}") from None


def find_model(path: str | Path) -> tuple[Path, Path]:
    """``(model.keras, model_card.json)`` of a run's ``best/`` folder or of its ``model.keras`` (or of the
    bundled model, for ``builtin``); a :class:`ConfigError` naming ``--init`` otherwise (no TensorFlow needed)."""
    given = resolve_init(path)
    folder = given if given.is_dir() else given.parent
    model, card = (folder / KERAS_FILE, folder / CARD_FILE) if given.is_dir() else (given, folder / CARD_FILE)
    if not given.exists():
        raise ConfigError(f"--init {path}: no such file or folder")
    if model.suffix != ".keras" or not model.is_file() or not card.is_file():
        raise ConfigError(f"--init {path}: expected a FER Tune run's best/ folder (model.keras beside "
                          f"model_card.json) or that model.keras")
    return model, card


def read_init_card(path: str | Path) -> dict[str, Any]:
    """The model card of ``--init``, checked: the model file is beside it and it names the network's config.

    Raises :class:`ConfigError` naming ``--init``, the card and what was expected.
    """
    _, card_path = find_model(path)
    try:
        card = read_card(card_path.parent)
    except FerInputError as exc:
        raise ConfigError(f"--init {path}: {exc}") from None
    try:
        network_config(card)
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise ConfigError(f"--init {path}: {card_path} has no usable network config ({exc}); expected the card of "
                          "a FER Tune run's best/ folder") from None
    return card


def network_config(card: dict[str, Any]) -> TrainConfig:
    """The config of the card's network: its ensemble's first member, else the card's own config."""
    return TrainConfig.from_dict((card.get("ensemble") or [{"config": card["config"]}])[0]["config"])


def load_pretrained(path: str | Path) -> Pretrained:
    """The first network of the model at ``path`` (see :func:`find_model`), ready to fine-tune."""
    card = read_init_card(path)  # checks the model file and the card are there
    model_path, _ = find_model(path)
    configure_tensorflow()  # TensorFlow's start-up lines muted, as everywhere else it is imported
    import keras

    import fer_core.layers  # noqa: F401  registers the exported model's layers; imports Keras, so not at import time

    config = network_config(card)
    model = keras.saving.load_model(model_path, compile=False)
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    network = nested[0] if nested else model  # an exported ensemble wraps its members; the first is the best
    weights = {layer.name: layer.get_weights() for layer in network.layers if layer.weights and layer.name != HEAD}
    about = {"data_fingerprint": card.get("data_fingerprint"), "trained_on": card.get("trained_on"),
             "class_names": card.get("class_names"), "metrics": card.get("metrics")}
    return Pretrained(str(resolve_init(path).resolve()), config, weights, about)


def finetuning_config(pretrained: Pretrained, **values: Any) -> TrainConfig:
    """``values`` on the pretrained network's architecture (the architecture wins)."""
    return TrainConfig.from_dict({**values, **pretrained.architecture()})


def build_finetuned(config: TrainConfig, pretrained: Pretrained, input_shape: tuple[int, int, int],
                    n_classes: int, name: str = "fer_cnn"):
    """The network of ``config`` with ``pretrained``'s weights in every layer but a new head."""
    differs = {k: (getattr(config, k), v) for k, v in pretrained.architecture().items() if getattr(config, k) != v}
    if differs:
        raise ConfigError("fine-tuning config differs from the pretrained network in " +
                          ", ".join(f"{k}={mine!r} (pretrained {theirs!r})" for k, (mine, theirs) in differs.items()))
    model = build_cnn(config, input_shape, n_classes, name=name)
    names = {layer.name for layer in model.layers}
    for layer_name, weights in pretrained.weights.items():
        if layer_name not in names:
            raise ConfigError(f"--init {pretrained.source}: layer {layer_name} has no place in the network "
                              f"of {n_classes} classes on {input_shape} inputs")
        layer = model.get_layer(layer_name)
        if [w.shape for w in layer.get_weights()] != [np.shape(w) for w in weights]:
            raise ConfigError(f"--init {pretrained.source}: layer {layer_name}'s weights do not fit "
                              f"{input_shape} inputs")
        layer.set_weights(weights)
    return model


def finetune_optimizer(config: TrainConfig, model, steps_per_epoch: int):
    """:class:`FineTuneAdam` at ``config``'s rate for ``model`` (built by :func:`build_finetuned`)."""
    frozen_epochs = math.ceil(config.frozen_share * config.epochs) if config.frozen_blocks else 0
    frozen = [f"block{b}_" for b in range(1, config.frozen_blocks + 1)]
    return make_finetune_adam()(config.learning_rate, backbone_share=config.backbone_lr_share,
                                frozen_prefixes=frozen, frozen_steps=frozen_epochs * steps_per_epoch)


_ADAM: Optional[type] = None


def make_finetune_adam() -> type:
    """The :class:`FineTuneAdam` class (built on first use, so importing this module loads no Keras)."""
    global _ADAM
    if _ADAM is None:
        _ADAM = _define_finetune_adam()
    return _ADAM


def _define_finetune_adam() -> type:
    import keras

    @keras.saving.register_keras_serializable(package="fer_tune", name="FineTuneAdam")
    class FineTuneAdam(keras.optimizers.Adam):
        """Adam with the rate of every layer but the head scaled by ``backbone_share``, and the
        layers named with ``frozen_prefixes`` at rate 0 for the first ``frozen_steps`` steps."""

        def __init__(self, learning_rate=1e-3, backbone_share: float = 1.0, frozen_prefixes=(),
                     frozen_steps: int = 0, **kwargs):
            super().__init__(learning_rate, **kwargs)
            self.backbone_share = float(backbone_share)
            self.frozen_prefixes = tuple(frozen_prefixes)
            self.frozen_steps = int(frozen_steps)

        def build(self, variables):
            super().build(variables)
            # by the variable's index: under TensorFlow update_step sees the backend variable, not its path
            layer_of = [variable.path.split("/")[-2] for variable in variables]
            self._share = [1.0 if layer == HEAD else self.backbone_share for layer in layer_of]
            self._frozen = [layer.startswith(self.frozen_prefixes) for layer in layer_of]

        def update_step(self, gradient, variable, learning_rate):
            index = self._get_variable_index(variable)
            scale = self._share[index]
            if self._frozen[index] and self.frozen_steps:
                scale = keras.ops.where(self.iterations < self.frozen_steps, 0.0, scale)
            if not isinstance(scale, float) or scale != 1.0:
                learning_rate = keras.ops.cast(learning_rate, variable.dtype) * keras.ops.cast(scale, variable.dtype)
            return super().update_step(gradient, variable, learning_rate)

        def get_config(self):
            return {**super().get_config(), "backbone_share": self.backbone_share,
                    "frozen_prefixes": list(self.frozen_prefixes), "frozen_steps": self.frozen_steps}

    return FineTuneAdam
