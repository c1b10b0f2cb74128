"""Training-time augmentation from a config, as Keras 3 preprocessing layers.

Keras 3 has no ``ImageDataGenerator``; the seed's rotation/shift/shear/zoom/flip become
``RandomRotation``, ``RandomTranslation``, ``RandomShear``, ``RandomZoom`` and
``RandomFlip``, plus contrast, brightness and random erasing (``RandomErasing``: a
rectangle of noise over part of the face, so that no single region decides the class).
The pipeline runs inside ``tf.data`` on training batches only, so exported models carry
no augmentation at all.
"""

from __future__ import annotations

import math
from typing import Optional

from fer_core.config import TrainConfig

FILL_MODE = "nearest"  # ImageDataGenerator's default, which the seed notebook used
ERASING_SCALE = (0.02, 0.15)  # area share of the erased rectangle, roughly


def build_augmenter(config: TrainConfig, seed: Optional[int] = None):
    """A ``keras.Sequential`` of the augmentations ``config`` turns on, or ``None``.

    Each magnitude of 0 leaves its layer out; with everything off there is nothing to
    run and ``None`` comes back. Layers are seeded from ``seed`` (default: the config's)
    so that a training run is reproducible. Call it with ``training=True``.
    """
    import keras
    from keras import layers

    seed = config.seed if seed is None else seed
    stack = []
    if config.flip:
        stack.append(layers.RandomFlip("horizontal", seed=seed))
    if config.rotation > 0:
        stack.append(layers.RandomRotation(config.rotation / 360.0, fill_mode=FILL_MODE, seed=seed + 1))
    if config.shift > 0:
        stack.append(layers.RandomTranslation(config.shift, config.shift, fill_mode=FILL_MODE, seed=seed + 2))
    if config.shear > 0:
        # ImageDataGenerator sheared by an angle; RandomShear takes the shift as a fraction
        slope = math.tan(math.radians(config.shear))
        stack.append(layers.RandomShear(slope, slope, fill_mode=FILL_MODE, seed=seed + 3))
    if config.zoom > 0:
        stack.append(layers.RandomZoom(config.zoom, config.zoom, fill_mode=FILL_MODE, seed=seed + 4))
    if config.contrast > 0:
        stack.append(layers.RandomContrast(config.contrast, value_range=(0.0, 1.0), seed=seed + 5))
    if config.brightness > 0:
        stack.append(layers.RandomBrightness(config.brightness, value_range=(0.0, 1.0), seed=seed + 6))
    if config.erasing > 0:
        # each image is erased with a probability drawn from [0, erasing); the rectangle's
        # sides are sqrt(U(scale)) of the image's, so it covers 2-15% of the face
        stack.append(layers.RandomErasing(config.erasing, scale=ERASING_SCALE, value_range=(0.0, 1.0), seed=seed + 7))
    if not stack:
        return None
    return keras.Sequential(stack, name="augmentation")
