"""The parametrized CNN: conv blocks, a dense head, softmax over the classes.

``build_cnn(TrainConfig())`` is the seed notebook's network exactly: three blocks of one
3x3 ReLU convolution (32/64/128 filters, ``valid`` padding) and 2x2 max-pooling, flatten,
dense 128, softmax. The search varies input standardization, depth, width,
convolutions per block, kernel size, padding, batch norm, pooling, dropout, L2 and the
head, and on a large data set residual and depthwise-separable blocks (Xception's, as the
mini-Xception of Arriaga et al. 2017: the first block is a plain stem). :func:`flops_per_face`
says what a config costs. :func:`build_predictor` joins trained networks into the exported model: the
average over the members, each seeing the face and its mirror image.
"""

from __future__ import annotations

from typing import Sequence

from fer_core.config import TrainConfig
from fer_core.errors import ConfigError

BN_MOMENTUM = 0.9
STANDARDIZE_EPSILON = 1e-5  # variance floor, far below a face's (~0.02-0.06 on [0, 1] pixels)


def build_cnn(config: TrainConfig, input_shape: tuple[int, int, int] = (48, 48, 1),
              n_classes: int = 7, name: str = "fer_cnn"):
    """Build (not compile) the Keras model that ``config`` describes.

    The input is the preprocessed image (``float32`` in [0, 1]); augmentation is not
    part of the model, it lives in the training input pipeline. Raises
    :class:`ConfigError` when the configuration shrinks the feature map below one pixel
    (too many blocks for ``valid`` padding, say) instead of failing deep inside Keras.
    """
    import keras
    from keras import layers

    check_fits(config, input_shape)
    regularizer = keras.regularizers.L2(config.l2) if config.l2 > 0 else None
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    if config.normalize == "standardize":
        # per-image standardization: each face to zero mean and unit variance over its
        # pixels, so lighting and contrast differences between subjects drop out
        x = layers.LayerNormalization(axis=(1, 2, 3), center=False, scale=False, epsilon=STANDARDIZE_EPSILON,
                                      name="standardize")(x)
    elif config.normalize == "equalize":
        # per-image histogram equalization: grey levels spread evenly over the range
        from fer_core.layers import Equalize  # imports Keras: not at import time, search.run --help stays light

        x = Equalize(name="equalize")(x)
    for block, filters in enumerate(config.filters, start=1):
        shortcut = x
        for conv in range(1, config.convs_per_block + 1):
            # in a residual block the last convolution's ReLU comes after the shortcut is added
            last = config.residual and conv == config.convs_per_block
            activation = None if config.batch_norm or last else "relu"
            if config.separable and block > 1:
                x = layers.SeparableConv2D(filters, config.kernel_size, padding=config.padding,
                                           use_bias=not config.batch_norm, depthwise_regularizer=regularizer,
                                           pointwise_regularizer=regularizer, activation=activation,
                                           name=f"block{block}_conv{conv}")(x)
            else:
                x = layers.Conv2D(filters, config.kernel_size, padding=config.padding,
                                  use_bias=not config.batch_norm, kernel_regularizer=regularizer,
                                  activation=activation, name=f"block{block}_conv{conv}")(x)
            if config.batch_norm:
                # momentum 0.9, not 0.99: trials on small data sets run few steps, and the moving
                # statistics must catch up within an epoch or two for validation to mean anything
                x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"block{block}_bn{conv}")(x)
            if config.batch_norm and not last:
                x = layers.Activation("relu", name=f"block{block}_relu{conv}")(x)
        if config.residual:
            x = layers.Add(name=f"block{block}_add")([x, _shortcut(shortcut, filters, config, regularizer, block)])
            x = layers.Activation("relu", name=f"block{block}_relu")(x)
        pool = layers.MaxPooling2D if config.pooling == "max" else layers.AveragePooling2D
        x = pool(2, name=f"block{block}_pool")(x)
        if config.conv_dropout > 0:
            x = layers.Dropout(config.conv_dropout, name=f"block{block}_dropout")(x)
    if config.head == "gap":
        x = layers.GlobalAveragePooling2D(name="gap")(x)
    else:
        x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(config.dense_units, activation="relu", kernel_regularizer=regularizer, name="dense")(x)
    if config.dense_dropout > 0:
        x = layers.Dropout(config.dense_dropout, name="dense_dropout")(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=name)


def _shortcut(x, filters: int, config: TrainConfig, regularizer, block: int):
    """A residual block's shortcut: its input, centre-cropped by what ``valid`` padding
    trims from the convolutions' output, and projected by a 1x1 convolution (batch-normed
    where the block is) when the block changes the width."""
    from keras import layers

    trim = config.convs_per_block * (config.kernel_size - 1) if config.padding == "valid" else 0
    if trim:
        side = (trim // 2, trim - trim // 2)
        x = layers.Cropping2D((side, side), name=f"block{block}_crop")(x)
    if x.shape[-1] != filters:
        x = layers.Conv2D(filters, 1, use_bias=not config.batch_norm, kernel_regularizer=regularizer,
                          name=f"block{block}_project")(x)
        if config.batch_norm:
            x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"block{block}_project_bn")(x)
    return x


def build_predictor(members: Sequence, mirror: bool = True, name: str = "fer_predictor"):
    """One model that averages the class probabilities of trained ``members``.

    Each member sees the image and, with ``mirror``, its left-right mirror image too
    (test-time augmentation: faces are near-symmetric, and averaging both views
    steadies the prediction). With one member and no mirror the member itself comes
    back. Members must have distinct names and share input shape and classes.
    """
    import keras
    from keras import layers

    from fer_core.layers import Mirror  # imports Keras: not at import time, search.run --help stays light

    members = list(members)
    if len(members) == 1 and not mirror:
        return members[0]
    inputs = keras.Input(shape=members[0].input_shape[1:], name="image")
    views = [inputs, Mirror(name="mirror")(inputs)] if mirror else [inputs]
    outputs = [member(view) for member in members for view in views]
    averaged = layers.Average(name="average")(outputs)
    return keras.Model(inputs, averaged, name=name)


def flops_per_face(config: TrainConfig, input_shape: tuple[int, int, int] = (48, 48, 1), n_classes: int = 7) -> int:
    """Floating-point operations of one face's forward pass through ``config``'s network (two per
    multiply-add of its convolutions, projections and dense layers; a training step costs about
    three times this). The measure of a config's cost that needs no Keras and no clock."""
    side, channels, multiply_adds = input_shape[0], input_shape[2], 0
    for block, filters in enumerate(config.filters, start=1):
        block_in = channels
        for _ in range(config.convs_per_block):
            if config.padding == "valid":
                side -= config.kernel_size - 1
            per_pixel = (config.kernel_size ** 2 * channels + channels * filters if config.separable and block > 1
                         else config.kernel_size ** 2 * channels * filters)
            multiply_adds += side * side * per_pixel
            channels = filters
        if config.residual and block_in != filters:
            multiply_adds += side * side * block_in * filters  # the 1x1 projection
        side //= 2
    features = channels if config.head == "gap" else side * side * channels
    multiply_adds += features * config.dense_units + config.dense_units * n_classes
    return 2 * multiply_adds


def check_fits(config: TrainConfig, input_shape: tuple[int, int, int]) -> None:
    """Raise :class:`ConfigError` if the conv and pooling stack leaves no pixels of the input."""
    side = min(input_shape[:2])
    for block in range(1, config.conv_blocks + 1):
        for _ in range(config.convs_per_block):
            if config.padding == "valid":
                side -= config.kernel_size - 1
            if side < 1:
                raise ConfigError(f"config: conv {block} leaves no pixels of a {input_shape[0]}x{input_shape[1]} "
                                  f"input (conv_blocks={config.conv_blocks}, convs_per_block="
                                  f"{config.convs_per_block}, kernel_size={config.kernel_size}, padding="
                                  f"{config.padding}); expected fewer blocks or padding='same'")
        side //= 2
        if side < 1:
            raise ConfigError(f"config: pooling of block {block} leaves no pixels of a "
                              f"{input_shape[0]}x{input_shape[1]} input; expected conv_blocks <= {block - 1}")
