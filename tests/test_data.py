"""Loaders, validation of bad input, and split properties."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import random_pixels, write_csv, write_image_folder
from fer_core.data import CSV_LABELS, Dataset, load, load_csv
from fer_core.splits import resolve_split, split
from fer_core.errors import DataError


# ----------------------------------------------------------------------------- CSV

def test_ck_csv_loads_with_names_and_contiguous_labels(ck_csv: Path) -> None:
    data = load(ck_csv)
    assert data.images.shape == (30, 48, 48, 1) and data.images.dtype == np.float32
    assert 0.0 <= data.images.min() and data.images.max() <= 1.0
    # codes 0,1,3,5,7 become 0..4 and keep CK+'s names
    assert data.class_names == (CSV_LABELS[0], CSV_LABELS[1], CSV_LABELS[3], CSV_LABELS[5], CSV_LABELS[7])
    assert data.class_names[-1] == "contempt"
    assert sorted(np.unique(data.labels)) == [0, 1, 2, 3, 4]
    assert data.groups is None
    assert set(data.usage) == {"Training", "PublicTest", "PrivateTest"}


def test_csv_pixels_are_scaled_exactly(tmp_path: Path) -> None:
    pixels = np.arange(48 * 48) % 256
    path = write_csv(tmp_path / "a.csv", [(3, pixels), (4, pixels[::-1])], header="emotion,pixels")
    data = load_csv(path)
    np.testing.assert_allclose(data.images[0, :, :, 0].ravel(), pixels / 255.0, atol=1e-6)
    assert data.usage is None


def test_fer2013_style_csv_of_other_square_size_is_resized(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    rows = [(label, random_pixels(rng, side=24), "Training") for label in range(7) for _ in range(3)]
    data = load(write_csv(tmp_path / "fer2013.csv", rows))
    assert data.images.shape == (21, 48, 48, 1)
    assert data.n_classes == 7 and data.class_names[6] == "neutral"


@pytest.mark.parametrize("content, expected", [
    ("", "file is empty"),
    ("emotion,pixels,Usage\n", "no rows follow"),
    ("label,pixels\n0,1 2 3 4\n", "missing column(s) emotion"),
    ("emotion,image\n0,1 2 3 4\n", "missing column(s) pixels"),
    ("emotion;pixels;Usage\n0;1 2 3 4;Training\n", "another delimiter"),
    ("0,1 2 3 4\n1,1 2 3 4\n", "looks like data"),
    ("emotion,pixels\n0,1 2 3 4\n1,1 2 x 4\n", "line 3: pixel 3 is 'x'"),
    ("emotion,pixels\n0,1 2 3 4\n1,1 2 3 999\n", "line 3: pixel 4 is '999'"),
    ("emotion,pixels\n0,1 2 3\n", "line 2: 3 pixels do not make a square"),
    ("emotion,pixels\n0,1 2 3 4\n1,1 2 3 4 5 6 7 8 9\n", "line 3: 9 pixels where earlier rows have 4"),
    ("emotion,pixels\n0,1 2 3 4\n-1,1 2 3 4\n", "line 3: emotion '-1' is not a non-negative integer"),
    ("emotion,pixels\n0,1 2 3 4\n1.5,1 2 3 4\n", "line 3: emotion '1.5'"),
    ("emotion,pixels\n0,1 2 3 4\n,1 2 3 4\n", "line 3: emotion ''"),
    ("emotion,pixels\n0,1 2 3 4\nNaN,1 2 3 4\n", "line 3: emotion 'NaN'"),
    ("emotion,pixels\n0,1 2 3 4\n1,\n", "line 3: pixels is empty"),
    ("emotion,pixels\n0,1 2 3 4\n1,1 2 3 4,extra\n", "line 3: 3 fields where the header has 2"),
    ("emotion,pixels\n0,1 2 3 4\n", "only one class"),
])
def test_bad_csv_raises_one_error_naming_file_and_line(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(DataError) as info:
        load(path)
    message = str(info.value)
    assert expected in message
    assert str(path) in message
    assert "\n" not in message


def test_huge_row_is_named_not_crashed_on(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    huge = " ".join(["7"] * 512 * 512)  # 2 MB of pixels in one field, far past csv's default limit
    path = write_csv(tmp_path / "huge.csv", [(0, random_pixels(rng)), (1, huge), (1, random_pixels(rng))],
                     header="emotion,pixels")
    with pytest.raises(DataError, match=r"huge.csv, line 3: 262144 pixels where earlier rows have 2304"):
        load(path)


def test_large_images_in_a_csv_are_read_and_resized(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    path = write_csv(tmp_path / "big.csv", [(i % 2, random_pixels(rng, side=256)) for i in range(4)],
                     header="emotion,pixels")
    assert load(path).images.shape == (4, 48, 48, 1)


def test_binary_file_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(b"\xff\xfe\x00\x81" * 100)
    with pytest.raises(DataError, match="x.csv"):
        load(path)


def test_missing_source_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file or folder"):
        load(tmp_path / "nope.csv")


# ----------------------------------------------------------------------------- folders

def test_folder_loader_reads_classes_and_subjects(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "ck", {"happy": 6, "anger": 5, "surprise": 4}, subjects=3)
    data = load(root)
    assert data.class_names == ("anger", "happy", "surprise")
    assert data.class_counts().tolist() == [5, 6, 4]
    assert data.groups is not None and set(data.groups) == {"S100", "S101", "S102"}
    assert data.images.shape == (15, 48, 48, 1)


def test_folder_without_ck_names_has_no_subjects_and_resizes(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "f", {"a": 3, "b": 3}, ck_names=False, size=64)
    data = load(root)
    assert data.groups is None and data.images.shape == (6, 48, 48, 1)


def test_fer2013_image_layout_sets_usage(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "fer" / "train", {"angry": 4, "happy": 4}, ck_names=False)
    write_image_folder(tmp_path / "fer" / "test", {"angry": 2, "happy": 2}, ck_names=False)
    data = load(tmp_path / "fer")
    assert data.class_names == ("angry", "happy")
    assert sorted(set(data.usage)) == ["PrivateTest", "Training"]
    assert resolve_split(data, "auto") == "usage"
    train, test = split(data, "usage")
    assert len(test) == 4 and set(test.usage) == {"PrivateTest"}


def test_non_image_files_are_skipped_with_a_warning(tmp_path: Path, caplog) -> None:
    root = write_image_folder(tmp_path / "d", {"a": 3, "b": 3})
    (root / "a" / "notes.txt").write_text("hello")
    (root / "a" / ".DS_Store").write_bytes(b"\0")
    data = load(root)
    assert len(data) == 6
    assert "skipped 1 file" in caplog.text


@pytest.mark.parametrize("case, expected", [
    ("empty_root", "no class folders"),
    ("empty_class", "holds no images"),
    ("one_class", "only one class"),
    ("corrupt_png", "cannot decode image"),
])
def test_bad_folders_raise_naming_the_path(tmp_path: Path, case: str, expected: str) -> None:
    root = tmp_path / "faces"
    root.mkdir()
    where = root
    if case == "empty_class":
        write_image_folder(root, {"a": 2})
        (root / "b").mkdir()
        where = root / "b"
    elif case == "one_class":
        write_image_folder(root, {"a": 3})
    elif case == "corrupt_png":
        write_image_folder(root, {"a": 2, "b": 2})
        where = root / "b" / "broken.png"
        where.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(DataError) as info:
        load(root)
    assert expected in str(info.value) and str(where) in str(info.value)


def test_synthetic_source_strings() -> None:
    assert len(load("synthetic:50")) == 50
    with pytest.raises(DataError, match="synthetic:N"):
        load("synthetic:lots")


# ----------------------------------------------------------------------------- splits

def _grouped(n_subjects: int = 20, per_subject: int = 7, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    n = n_subjects * per_subject
    labels = np.tile(np.arange(per_subject), n_subjects) % 4
    return Dataset(images=rng.random((n, 48, 48, 1), dtype=np.float32), labels=labels.astype(np.int64),
                   class_names=("a", "b", "c", "d"),
                   groups=np.repeat([f"S{i:03d}" for i in range(n_subjects)], per_subject), source="grouped")


def test_subject_split_keeps_subjects_apart_and_is_deterministic() -> None:
    data = _grouped()
    train, test = split(data, "subject")
    assert not set(train.groups) & set(test.groups)
    assert len(train) + len(test) == len(data)
    assert 0.1 < len(test) / len(data) < 0.3
    assert set(test.labels) == set(range(4))
    again_train, again_test = split(data, "subject")
    np.testing.assert_array_equal(again_test.images, test.images)
    _, other_test = split(data, "subject", seed=7)
    assert set(other_test.groups) != set(test.groups)


def test_random_split_is_stratified_and_deterministic() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), [50, 30, 20])
    data = Dataset(images=rng.random((100, 48, 48, 1), dtype=np.float32), labels=labels,
                   class_names=("x", "y", "z"))
    train, test = split(data, "random")
    assert len(test) == 20
    assert test.class_counts().tolist() == [10, 6, 4]
    np.testing.assert_array_equal(split(data, "random")[1].labels, test.labels)


def test_validation_carve_of_usage_split_uses_public_test(ck_csv: Path) -> None:
    data = load(ck_csv)
    rest, test = split(data, "usage")
    train, val = split(rest, "usage")
    assert set(test.usage) == {"PrivateTest"} and set(val.usage) == {"PublicTest"}
    assert set(train.usage) == {"Training"}


def test_auto_split_resolution(ck_csv: Path) -> None:
    assert resolve_split(_grouped(), "auto") == "subject"
    assert resolve_split(load(ck_csv), "auto") == "usage"
    plain = Dataset(images=np.zeros((4, 48, 48, 1), np.float32), labels=np.array([0, 0, 1, 1]), class_names=("a", "b"))
    assert resolve_split(plain, "auto") == "random"


@pytest.mark.parametrize("method, expected", [("subject", "needs subject ids"), ("usage", "needs a Usage column"),
                                              ("sideways", "expected one of auto, random, subject, usage")])
def test_split_errors(method: str, expected: str) -> None:
    plain = Dataset(images=np.zeros((4, 48, 48, 1), np.float32), labels=np.array([0, 0, 1, 1]), class_names=("a", "b"))
    with pytest.raises(DataError, match=expected):
        resolve_split(plain, method)


def test_class_too_small_to_split_names_the_class() -> None:
    labels = np.array([0] * 10 + [1] * 10 + [2])
    data = Dataset(images=np.zeros((21, 48, 48, 1), np.float32), labels=labels, class_names=("a", "b", "rare"))
    with pytest.raises(DataError, match="class 'rare' has 1 image"):
        split(data, "random")


def test_too_few_subjects_for_a_subject_split() -> None:
    with pytest.raises(DataError, match="3 subject"):
        split(_grouped(n_subjects=3), "subject")


# ----------------------------------------------------------------------------- CK+48 for real

@pytest.mark.ck48
def test_ck48_loads_for_real(ck48: Path) -> None:
    data = load(ck48)
    assert len(data) == 981
    assert data.class_names == ("anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise")
    assert data.class_counts().tolist() == [135, 54, 177, 75, 207, 84, 249]
    assert len(np.unique(data.groups)) == 118
    train, test = split(data, "subject")
    assert not set(train.groups) & set(test.groups)
    assert test.n_classes == 7 and (test.class_counts() > 0).all()
