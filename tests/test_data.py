"""Loaders, validation of bad input, and split properties."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, random_pixels, write_csv, write_fer_tree, write_image_folder
from fer_core.data import CSV_LABELS, load, load_csv
from fer_core.dataset import Dataset
from fer_core.errors import DataError
from fer_core.faces import FaceReport
from fer_core.splits import VAL_FRACTION, make_splits, resolve_split, split

FER2013_ENV = "FER_TUNE_FER2013"  # CI points this at ../shared/data/fer2013


@pytest.fixture(scope="session")
def fer2013() -> Path:
    """FER2013's image folders: $FER_TUNE_FER2013, else ../shared/data/fer2013 beside the project."""
    for candidate in (os.environ.get(FER2013_ENV), ROOT.parent / "shared" / "data" / "fer2013"):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    pytest.skip(f"FER2013 not found: set {FER2013_ENV} to the fer2013 folder (train/ and test/ of class folders)")


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


def _rows(data: Dataset) -> set[bytes]:
    return {image.tobytes() for image in data.images}


def test_fer2013_file_names_give_usage_through_make_splits(tmp_path: Path) -> None:
    counts = {"Training": {"angry": 6, "happy": 8}, "PublicTest": {"angry": 2, "happy": 3},
              "PrivateTest": {"angry": 3, "happy": 2}}
    data = load(write_fer_tree(tmp_path / "fer2013", counts))
    splits = make_splits(data, "auto")
    assert splits.method == "usage"
    assert (len(splits.train), len(splits.val), len(splits.test)) == (14, 5, 5)
    assert set(splits.train.usage) == {"Training"} and set(splits.val.usage) == {"PublicTest"}
    assert set(splits.test.usage) == {"PrivateTest"}
    assert splits.val.class_counts().tolist() == [2, 3] and splits.test.class_counts().tolist() == [3, 2]


def test_file_name_usage_also_holds_in_class_folders_alone(tmp_path: Path) -> None:
    counts = {"Training": {"angry": 4, "happy": 4}, "PrivateTest": {"angry": 2, "happy": 2}}
    tree = write_fer_tree(tmp_path / "fer", counts)
    flat = tmp_path / "flat"
    for file in tree.glob("*/*/*.png"):
        (flat / file.parent.name).mkdir(parents=True, exist_ok=True)
        file.rename(flat / file.parent.name / file.name)
    data = load(flat)
    assert sorted(data.usage.tolist()).count("PrivateTest") == 4 and resolve_split(data, "auto") == "usage"


def test_train_test_tree_without_prefixes_carves_validation_from_train(tmp_path: Path) -> None:
    counts = {"Training": {"a": 30, "b": 20}, "PrivateTest": {"a": 5, "b": 5}}
    root = write_fer_tree(tmp_path / "tree", counts, prefixes=False)
    data = load(root)
    assert sorted(set(data.usage)) == ["PrivateTest", "Training"]
    splits = make_splits(data, "auto")
    assert splits.method == "usage" and len(splits.test) == 10 and set(splits.test.usage) == {"PrivateTest"}
    assert len(splits.val) == int(np.ceil(VAL_FRACTION * 50)) and splits.val.class_counts().tolist() == [3, 2]
    assert len(splits.train) + len(splits.val) == 50 and set(splits.val.usage) == {"Training"}
    assert not _rows(splits.train) & _rows(splits.val)
    trained = _rows(load(root / "train", faces="none"))
    assert _rows(splits.val) <= trained and _rows(splits.train) <= trained
    again = make_splits(load(root), "auto")
    np.testing.assert_array_equal(again.val.images, splits.val.images)


def test_fer2013_csv_without_public_test_carves_validation_from_training(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    rows = [(label, random_pixels(rng), "Training") for label in range(3) for _ in range(20)]
    rows += [(label, random_pixels(rng), "PrivateTest") for label in range(3) for _ in range(4)]
    splits = make_splits(load(write_csv(tmp_path / "fer2013.csv", rows)), "auto")
    assert splits.method == "usage" and len(splits.test) == 12 and set(splits.test.usage) == {"PrivateTest"}
    assert len(splits.val) == 6 and splits.val.class_counts().tolist() == [2, 2, 2]
    assert len(splits.train) == 54 and not _rows(splits.train) & _rows(splits.val)


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


def test_dataset_keeps_its_face_report_through_subset_and_concat(tmp_path: Path) -> None:
    data = load(write_image_folder(tmp_path / "ck", {"happy": 4, "sad": 4}))
    assert data.faces == FaceReport(mode="none", asked="auto")
    part = data.subset(np.arange(3))
    assert part.faces == data.faces and part.concat(data.subset(np.arange(3, 8))).faces == data.faces
    assert load("synthetic:20").faces is None


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


# ----------------------------------------------------------------------------- FER2013 for real

@pytest.mark.slow
def test_fer2013_image_folders_split_as_the_field_reports(fer2013: Path) -> None:
    data = load(fer2013)  # about 10 s decoding on 2 cores, 2 s from the cache
    assert data.class_names == ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
    assert data.faces.mode == "none" and data.groups is None
    splits = make_splits(data, "auto")
    assert splits.method == "usage"
    assert (len(splits.train), len(splits.val), len(splits.test)) == (28709, 3589, 3589)
    assert set(splits.val.usage) == {"PublicTest"} and set(splits.test.usage) == {"PrivateTest"}
    # PrivateTest's class counts as data/README.md gives them (majority happy, 24.5%)
    assert splits.test.class_counts().tolist() == [491, 55, 528, 879, 626, 594, 416]
