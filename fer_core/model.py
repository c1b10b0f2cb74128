"""The parametrized CNN: conv blocks, a dense head, softmax over the classes.

``build_cnn(TrainConfig())`` is the seed notebook's network exactly: three blocks of one
3x3 ReLU convolution (32/64/128 filters, ``valid`` padding) and 2x2 max-pooling, flatten,
dense 128, softmax. The search varies depth, width, convolutions per block, kernel
size, padding, batch norm, pooling, dropout, L2 and the head.
"""

from __future__ import annotations

from fer_core.config import TrainConfig
from fer_core.errors import ConfigError

BN_MOMENTUM = 0.9


def build_cnn(config: TrainConfig, input_shape: tuple[int, int, int] = (48, 48, 1),
              n_classes: int = 7):
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
    for block, filters in enumerate(config.filters, start=1):
        for conv in range(1, config.convs_per_block + 1):
            x = layers.Conv2D(filters, config.kernel_size, padding=config.padding,
                              use_bias=not config.batch_norm, kernel_regularizer=regularizer,
                              activation=None if config.batch_norm else "relu",
                              name=f"block{block}_conv{conv}")(x)
            if config.batch_norm:
                # momentum 0.9, not 0.99: trials on small data sets run few steps, and the moving
                # statistics must catch up within an epoch or two for validation to mean anything
                x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"block{block}_bn{conv}")(x)
                x = layers.Activation("relu", name=f"block{block}_relu{conv}")(x)
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
    return keras.Model(inputs, outputs, name="fer_cnn")


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
