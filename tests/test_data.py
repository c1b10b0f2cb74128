"""Loaders, validation of bad input, and split properties."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, random_pixels, write_csv, write_image_folder
from fer_core.data import CSV_LABELS, load, load_csv, read_gray
from fer_core.dataset import Dataset
from fer_core.errors import DataError, run_cli
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


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch) -> Path:
    """A private, empty cache folder, used for every image set however small."""
    monkeypatch.setenv("FER_TUNE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("fer_core.data.CACHE_MIN_FILES", 0)
    return tmp_path / "cache"


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


def _write_fer_tree(root: Path, counts: dict[str, dict[str, int]], prefixes: bool = True, seed: int = 0) -> Path:
    """FER2013's image layout: usage -> {class: n}; Training goes to train/, the two tests to test/."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for usage, classes in counts.items():
        for name, count in classes.items():
            folder = root / ("train" if usage == "Training" else "test") / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                stem = f"{usage}_{seed}{i:05d}" if prefixes else f"{usage.lower()}{i:05d}"
                Image.fromarray(rng.integers(0, 256, (48, 48), dtype=np.uint8)).save(folder / f"{stem}.png")
    return root


def _rows(data: Dataset) -> set[bytes]:
    return {image.tobytes() for image in data.images}


def test_fer2013_file_names_give_usage_through_make_splits(tmp_path: Path) -> None:
    counts = {"Training": {"angry": 6, "happy": 8}, "PublicTest": {"angry": 2, "happy": 3},
              "PrivateTest": {"angry": 3, "happy": 2}}
    data = load(_write_fer_tree(tmp_path / "fer2013", counts))
    splits = make_splits(data, "auto")
    assert splits.method == "usage"
    assert (len(splits.train), len(splits.val), len(splits.test)) == (14, 5, 5)
    assert set(splits.train.usage) == {"Training"} and set(splits.val.usage) == {"PublicTest"}
    assert set(splits.test.usage) == {"PrivateTest"}
    assert splits.val.class_counts().tolist() == [2, 3] and splits.test.class_counts().tolist() == [3, 2]


def test_file_name_usage_also_holds_in_class_folders_alone(tmp_path: Path) -> None:
    counts = {"Training": {"angry": 4, "happy": 4}, "PrivateTest": {"angry": 2, "happy": 2}}
    tree = _write_fer_tree(tmp_path / "fer", counts)
    flat = tmp_path / "flat"
    for file in tree.glob("*/*/*.png"):
        (flat / file.parent.name).mkdir(parents=True, exist_ok=True)
        file.rename(flat / file.parent.name / file.name)
    data = load(flat)
    assert sorted(data.usage.tolist()).count("PrivateTest") == 4 and resolve_split(data, "auto") == "usage"


def test_train_test_tree_without_prefixes_carves_validation_from_train(tmp_path: Path) -> None:
    counts = {"Training": {"a": 30, "b": 20}, "PrivateTest": {"a": 5, "b": 5}}
    root = _write_fer_tree(tmp_path / "tree", counts, prefixes=False)
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


def test_read_gray_turns_phone_photos_upright(tmp_path: Path) -> None:
    from PIL import Image

    pixels = np.zeros((30, 40, 3), np.uint8)
    pixels[:, :5] = 255  # a white stripe on the left as stored
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # EXIF orientation 6: the camera was turned; show the picture rotated 90 degrees
    image.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    gray = read_gray(tmp_path / "phone.jpg")
    assert gray.shape == (40, 30) and gray.dtype == np.uint8
    assert gray[:5].mean() > 200 and gray[-5:].mean() < 50  # the stripe is now on top
    with pytest.raises(DataError, match="phone.png: cannot decode image"):
        (tmp_path / "phone.png").write_bytes(b"not an image")
        read_gray(tmp_path / "phone.png")


# ----------------------------------------------------------------------------- manifests

def _image(path: Path, rng: np.random.Generator, size: int = 48) -> np.ndarray:
    from PIL import Image

    pixels = rng.integers(0, 256, (size, size), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return pixels


def _manifest(tmp_path: Path, lines: list[str], header: str = "path,label,subject") -> Path:
    path = tmp_path / "photos.csv"
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


def test_manifest_with_subjects_keeps_each_subject_on_one_side(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    lines, pixels = [], []
    for subject in range(15):
        for label in ("sad", "happy", "surprise"):
            for take in range(2):
                relative = f"people/p{subject}/{label}{take}.png"
                pixels.append(_image(tmp_path / relative, rng))
                lines.append(f"{relative},{label},person{subject}")
    data = load(_manifest(tmp_path, lines))
    assert data.class_names == ("happy", "sad", "surprise") and len(data) == 90
    assert len(np.unique(data.groups)) == 15 and data.usage is None
    np.testing.assert_allclose(data.images[7, ..., 0], pixels[7] / 255.0, atol=1e-6)
    assert data.class_names[data.labels[7]] == lines[7].split(",")[1]
    splits = make_splits(data, "auto")
    assert splits.method == "subject"
    sides = [set(part.groups) for part in (splits.train, splits.val, splits.test)]
    assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
    assert sum(len(part) for part in (splits.train, splits.val, splits.test)) == 90


def test_manifest_usage_column_drives_a_usage_split(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    lines = []
    for i in range(24):
        _image(tmp_path / f"img{i}.png", rng, size=64)
        usage = ("Training", "publictest", "PrivateTest")[i % 3]  # any case: PublicTest is meant
        lines.append(f"img{i}.png,{('calm', 'angry')[i % 2]},{usage}")
    data = load(_manifest(tmp_path, lines, header="Path,Label,Usage"))
    assert data.groups is None and data.images.shape == (24, 48, 48, 1)
    splits = make_splits(data, "auto")
    assert splits.method == "usage" and set(splits.val.usage) == {"PublicTest"} and len(splits.test) == 8


@pytest.mark.parametrize("case, line, expected", [
    ("missing file", "people/nobody.png,happy,p1", "line 3: image 'people/nobody.png' not found"),
    ("unknown usage", "a.png,happy,p1,Validation", "line 3: usage 'Validation'; expected one of Training, PublicTest, PrivateTest"),
    ("empty label", "a.png,,p1", "line 3: label is empty; expected a class name"),
    ("unreadable image", "broken.png,sad,p1", "line 3: image"),
    ("empty subject", "a.png,sad,", "line 3: subject is empty"),
    ("empty path", ",sad,p1", "line 3: path is empty"),
    ("ragged row", "a.png,sad", "line 3: 2 fields where the header has 3"),
    ("unknown column", None, "line 1: unknown column 'subjet'; expected a header 'path,label[,subject][,usage]'"),
])
def test_bad_manifest_rows_are_one_line_errors_naming_csv_and_line(tmp_path: Path, capsys, case: str,
                                                                   line: str | None, expected: str) -> None:
    rng = np.random.default_rng(5)
    _image(tmp_path / "a.png", rng)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    header = "path,label,subject,usage" if case == "unknown usage" else "path,label,subject"
    first = "a.png,happy,p0,Training" if case == "unknown usage" else "a.png,happy,p0"
    if case == "unknown column":
        header = "path,label,subjet"
    path = _manifest(tmp_path, [first] + ([line] if line else ["a.png,sad,p1"]), header=header)
    with pytest.raises(DataError) as info:
        load(path)
    message = str(info.value)
    assert expected in message and message.startswith(str(path)) and "\n" not in message
    if case == "unreadable image":
        assert "cannot decode image" in message
    assert run_cli(lambda argv: load(path), prog="fer-tune") == 2  # what a command line prints
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err


# ----------------------------------------------------------------------------- cache

def _bmp_folder(root: Path, seed: int = 0) -> Path:
    """Class folders of BMPs: a BMP's size does not depend on its pixels, so edits keep it."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (48, 48), dtype=np.uint8)).save(root / name / f"{i}.bmp")
    return root


def _repaint(file: Path, value: int, keep_time: bool) -> None:
    from PIL import Image

    stat = file.stat()
    size = stat.st_size
    Image.fromarray(np.full((48, 48), value, np.uint8)).save(file)
    assert file.stat().st_size == size
    if keep_time:
        os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    else:
        os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))


def test_cache_serves_unchanged_files_and_rebuilds_changed_ones(tmp_path: Path, cache_dir: Path) -> None:
    root = _bmp_folder(tmp_path / "faces")
    first = load(root)
    assert len(list(cache_dir.glob("*.npz"))) == 1
    # Same paths, sizes and times: the cache answers, so the repainted pixels are not seen.
    _repaint(root / "a" / "0.bmp", 7, keep_time=True)
    np.testing.assert_array_equal(load(root).images, first.images)
    # A newer time makes the entry stale: the images are decoded again, and the entry replaced.
    _repaint(root / "a" / "0.bmp", 7, keep_time=False)
    again = load(root)
    assert np.allclose(again.images[0], 7 / 255) and not np.allclose(first.images[0], 7 / 255)
    assert len(list(cache_dir.glob("*.npz"))) == 1
    # An added file misses the cache too.
    (root / "b" / "3.bmp").write_bytes((root / "b" / "0.bmp").read_bytes())
    assert load(root).class_counts().tolist() == [3, 4]


def test_corrupt_cache_entry_is_ignored_and_rebuilt(tmp_path: Path, cache_dir: Path, caplog) -> None:
    root = _bmp_folder(tmp_path / "faces")
    first = load(root)
    (entry,) = cache_dir.glob("*.npz")
    entry.write_bytes(entry.read_bytes()[:1000])  # a half-written or damaged file
    with caplog.at_level(logging.WARNING):
        again = load(root)
    assert "ignoring unreadable cache entry" in caplog.text
    np.testing.assert_array_equal(again.images, first.images)
    assert again.usage is None and again.groups is None and again.faces == first.faces
    with np.load(entry) as saved:  # rewritten whole
        assert saved["images"].shape == (6, 48, 48)


def test_cache_entries_are_per_faces_option_and_can_be_turned_off(tmp_path: Path, cache_dir: Path,
                                                                   monkeypatch) -> None:
    root = _bmp_folder(tmp_path / "faces")
    load(root, faces="none")
    load(root, faces="auto")
    assert len(list(cache_dir.glob("*.npz"))) == 2
    load(root, faces="none", cache=False)
    monkeypatch.setenv("FER_TUNE_CACHE", "off")
    other = _bmp_folder(tmp_path / "other", seed=1)
    load(other)
    assert len(list(cache_dir.glob("*.npz"))) == 2


def test_cached_ck_layout_keeps_subjects_and_usage(tmp_path: Path, cache_dir: Path) -> None:
    root = write_image_folder(tmp_path / "ck", {"happy": 5, "sad": 5}, subjects=3)
    first, cached = load(root), load(root)
    assert list(cache_dir.glob("*.npz"))
    np.testing.assert_array_equal(cached.groups, first.groups)
    np.testing.assert_array_equal(cached.labels, first.labels)
    assert cached.class_names == first.class_names and cached.source == first.source
    tree = _write_fer_tree(tmp_path / "fer", {"Training": {"a": 4, "b": 4}, "PublicTest": {"a": 2, "b": 2},
                                              "PrivateTest": {"a": 2, "b": 2}})
    np.testing.assert_array_equal(load(tree).usage, load(tree).usage)
    assert set(load(tree).usage) == {"Training", "PublicTest", "PrivateTest"}


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
