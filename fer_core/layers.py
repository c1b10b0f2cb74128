"""The one custom Keras layer the exported models carry, registered for ``.keras`` loading.

Importing this module imports Keras; :mod:`fer_core.model` and :mod:`fer_core.export`
import it only when they build or load a model.
"""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="fer_core")
class Mirror(keras.layers.Layer):
    """Flips images left to right (``[N, H, W, C]``): test-time augmentation, not training.

    Unlike ``RandomFlip`` it always flips, in inference too, so that a model can average
    its predictions of a face and of its mirror image. It lowers to ``tf.reverse``, which
    SavedModel and TFLite both support.
    """

    def call(self, images):
        return keras.ops.flip(images, axis=2)

    def compute_output_shape(self, input_shape):
        return input_shape
