"""The built-in synthetic faces: format, determinism, class and identity structure, speed,
and that the emotions are learnable from the pixels (but not trivially)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from fer_core.dataset import Dataset
from fer_core.splits import split
from fer_core.synthetic import CLASS_NAMES, make_faces


@pytest.fixture(scope="module")
def faces() -> Dataset:
    return make_faces(1000, seed=0)


def test_shapes_dtypes_and_range(faces: Dataset) -> None:
    assert isinstance(faces, Dataset) and len(faces) == 1000
    assert faces.images.shape == (1000, 48, 48, 1) and faces.images.dtype == np.float32
    assert faces.labels.shape == (1000,) and faces.labels.dtype == np.int64
    assert 0.0 <= faces.images.min() and faces.images.max() <= 1.0
    assert np.isfinite(faces.images).all()
    assert faces.class_names == CLASS_NAMES == ("anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise")
    assert faces.usage is None and faces.source == "synthetic:1000"
    assert faces.images.std() > 0.1  # a picture, not a flat field


def test_same_seed_same_faces_other_seed_other_faces() -> None:
    a, b, c = make_faces(60, seed=3), make_faces(60, seed=3), make_faces(60, seed=4)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.groups, b.groups)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    assert np.abs(a.images - c.images).mean() > 0.05


@pytest.mark.parametrize("n", [14, 15, 50, 100, 1000])
def test_every_class_present_with_at_least_two_images(n: int) -> None:
    counts = make_faces(n).class_counts()
    assert counts.sum() == n and counts.min() >= 2, counts


def test_classes_mildly_imbalanced_like_ck(faces: Dataset) -> None:
    share = faces.class_counts() / len(faces)
    assert share.max() < 0.3 and share.min() > 0.05
    names = list(CLASS_NAMES)
    assert share[names.index("contempt")] < share[names.index("surprise")]
    assert share[names.index("fear")] < share[names.index("happy")]


def test_identities_show_several_emotions_and_classes_span_identities(faces: Dataset) -> None:
    assert faces.groups is not None and faces.groups.shape == (1000,)
    ids = np.unique(faces.groups)
    assert 100 <= len(ids) <= 150 and all(g.startswith("ID") for g in ids)
    for g in ids:
        assert len(np.unique(faces.labels[faces.groups == g])) > 1, g
    for label in range(len(CLASS_NAMES)):
        assert len(np.unique(faces.groups[faces.labels == label])) >= 2
    small = make_faces(100)
    for label in range(len(CLASS_NAMES)):
        assert len(np.unique(small.groups[small.labels == label])) >= 2


def test_subject_split_keeps_identities_apart(faces: Dataset) -> None:
    train, test = split(faces, "subject")
    assert not set(train.groups) & set(test.groups)
    assert (test.class_counts() > 0).all()
    assert len(np.unique(make_faces(14).groups)) >= 5  # enough identities to hold out a fifth


def test_a_thousand_faces_are_quick() -> None:
    start = time.perf_counter()
    make_faces(1000, seed=1)
    assert time.perf_counter() - start < 10.0  # about 0.4 s on one core; generous for slow CI


def test_rejects_no_faces() -> None:
    with pytest.raises(ValueError, match="n=0"):
        make_faces(0)


def test_class_mean_images_differ(faces: Dataset) -> None:
    means = np.stack([faces.images[faces.labels == k].mean(axis=0) for k in range(len(CLASS_NAMES))])
    for i in range(len(CLASS_NAMES)):
        for j in range(i + 1, len(CLASS_NAMES)):
            assert np.abs(means[i] - means[j]).max() > 0.02, (CLASS_NAMES[i], CLASS_NAMES[j])


def test_emotions_are_learnable_from_pixels_but_not_trivially() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    data = make_faces(700, seed=0)
    x = data.images.reshape(len(data), -1)
    train, test = train_test_split(np.arange(len(data)), test_size=0.3, stratify=data.labels, random_state=0)
    model = LogisticRegression(max_iter=1000).fit(x[train], data.labels[train])
    accuracy = model.score(x[test], data.labels[test])
    chance, majority = 1 / len(CLASS_NAMES), data.class_counts().max() / len(data)
    # a linear model sees the expressions (about 35%, twice chance) but must not solve the
    # set: pose, lighting and identity are meant to leave CNN hyperparameters something to find
    assert max(2 * chance, majority + 0.05) < accuracy < 0.6, accuracy
