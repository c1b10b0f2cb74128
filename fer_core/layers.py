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


EQUALIZE_LEVELS = 256  # grey levels of an 8-bit face, the histogram's bins
UNIFORM_STD = 12 ** -0.5  # standard deviation of the uniform distribution on [0, 1]


@keras.saving.register_keras_serializable(package="fer_core")
class Equalize(keras.layers.Layer):
    """Histogram equalization of each face (``[N, H, W, 1]`` in [0, 1]), inside the model.

    Each pixel becomes the share of the face's pixels at or below its grey level
    (256 levels; the classic CDF mapping, so the darkest level present maps to 0 and the
    brightest to 1): the face's grey levels spread evenly over the range, whatever its
    lighting, exposure or skin tone, and two pixels of one level stay equal. The result
    is centred and scaled as a uniform distribution would be (zero mean, unit variance),
    like the ``standardize`` input. Built from a segment sum, cumulative sum and gather,
    which SavedModel and TFLite both support.
    """

    def call(self, images):
        ops = keras.ops
        shape = ops.shape(images)
        flat = ops.reshape(images, (shape[0], -1))
        levels = ops.cast(ops.clip(ops.round(flat * (EQUALIZE_LEVELS - 1)), 0, EQUALIZE_LEVELS - 1), "int32")
        # each face's histogram, as one segment sum over (face, level) bins: linear in the pixels
        # (a one-hot histogram costs 256 times the face; it slowed a small network's step by 60%)
        faces = shape[0]
        bins = levels + ops.arange(faces, dtype="int32")[:, None] * EQUALIZE_LEVELS
        counts = ops.segment_sum(ops.ones_like(ops.reshape(flat, (-1,))), ops.reshape(bins, (-1,)),
                                  num_segments=faces * EQUALIZE_LEVELS)
        histogram = ops.reshape(counts, (faces, EQUALIZE_LEVELS))
        cdf = ops.cumsum(histogram, axis=1)
        pixels = ops.cast(ops.shape(flat)[1], images.dtype)
        # the CDF at the darkest level present: that level maps to 0
        cdf_min = ops.min(ops.where(histogram > 0, cdf, pixels), axis=1, keepdims=True)
        mapping = (cdf - cdf_min) / ops.maximum(pixels - cdf_min, 1.0)
        equalized = ops.take_along_axis(mapping, levels, axis=1)
        return ops.reshape((equalized - 0.5) / UNIFORM_STD, shape)

    def compute_output_shape(self, input_shape):
        return input_shape
