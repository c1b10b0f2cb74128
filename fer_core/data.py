"""Load facial-expression data sets into one small container, validate them, split them.

Sources: the Kaggle CK+ CSV (``ckextended.csv``) and FER2013's ``fer2013.csv``
(``emotion,pixels[,Usage]``, pixel strings of any square size), a manifest CSV of the
user's own photos (``path,label[,subject][,usage]``), a folder of class folders of images
(the CK+48 layout, or FER2013's ``train/`` and ``test/`` image layout, whose
``Training_``/``PublicTest_``/``PrivateTest_`` file-name prefixes are its Usage column),
and the built-in synthetic faces (``synthetic``, ``synthetic:N``, or ``synthetic:N:SEED`` for
other faces). Every image becomes 48x48 grayscale ``float32`` in [0, 1]; photos that are
not face crops are cropped to their largest face by :mod:`fer_core.faces`. Decoded image
sets of many files are cached outside the repository (``$FER_TUNE_CACHE``, else
``~/.cache/fer_tune``), keyed by the files' paths, sizes and times and the loader's options.

Bad input raises :class:`~fer_core.errors.DataError` naming the file, the line or the
folder and what was expected; nothing here prints or exits.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import numpy as np

from fer_core.dataset import IMAGE_SIZE, Dataset
from fer_core.errors import DataError
from fer_core.faces import DETECTOR, FaceReport, largest_face_crop, needs_cropping

log = logging.getLogger(__name__)


# The label map of the Kaggle CK+ CSV (ckextended.csv); FER2013 uses the same codes 0-6.
CSV_LABELS = {0: "anger", 1: "disgust", 2: "fear", 3: "happiness", 4: "sadness",
              5: "surprise", 6: "neutral", 7: "contempt"}

# CK+ file names: S010_004_00000017.png is subject S010, sequence 004, frame 17.
SUBJECT_PATTERN = re.compile(r"^(S\d+)_(\d+)_(\d+)$")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".pgm", ".webp")

# FER2013's Usage values: Training trains, PublicTest validates, PrivateTest is the held-out test.
USAGE_VALUES = ("Training", "PublicTest", "PrivateTest")

# FER2013's image layout splits by folder; map them onto the CSV's Usage values. A file
# whose name carries its Usage (below) overrides its folder: FER2013's test/ holds both.
USAGE_FOLDERS = {"train": "Training", "training": "Training", "val": "PublicTest",
                 "validation": "PublicTest", "publictest": "PublicTest",
                 "test": "PrivateTest", "privatetest": "PrivateTest"}

# Kaggle's FER2013 images are named by their row's Usage: Training_*, PublicTest_*, PrivateTest_*.
USAGE_PREFIX = re.compile(r"^(Training|PublicTest|PrivateTest)_")

MANIFEST_COLUMNS = ("path", "label", "subject", "usage")  # the user's own photos: path,label[,subject][,usage]

FACES = ("auto", "crop", "none")  # what loading does about faces: decide, crop the largest face, leave as is
FACE_SAMPLE = 20  # images "auto" looks at to decide; 20 at ~40 ms a photo keeps the decision under a second


CSV_FIELD_LIMIT = 64 * 2**20  # bytes in one pixel string: far above any real image (csv's default is 128 KiB)
PROGRESS_MIN_IMAGES = 2000  # decoding this many images or more shows a progress bar
CACHE_ENV = "FER_TUNE_CACHE"  # folder of decoded-image caches; "off" turns caching off
CACHE_MIN_FILES = 200  # smaller image sets decode in well under a second: not worth a cache file
CACHE_VERSION = 1  # bump when decoding or cropping changes, so that older cache entries are not used


# --------------------------------------------------------------------------- loading

def load(source: str | os.PathLike, faces: str = "auto", cache: bool = True) -> Dataset:
    """Load a data set from a CSV file, a folder of class folders, or ``synthetic[:N]``.

    The kind is told by the source itself: ``synthetic`` or ``synthetic:N`` for the
    built-in faces (1,000 by default), a folder for images, a file for a CSV (a manifest
    of image files when its header has a ``path`` column, else pixel rows). ``faces`` is
    ``"auto"`` (images that are 48x48 or already face crops are left alone, photos are
    cropped to their largest face; the decision is logged), ``"crop"`` or ``"none"``.
    Folders and manifests of :data:`CACHE_MIN_FILES` images or more are decoded once and
    cached under ``$FER_TUNE_CACHE`` (else ``~/.cache/fer_tune``); ``cache=False`` neither
    reads nor writes the cache. Raises :class:`DataError` for anything that cannot be read,
    naming where and why.
    """
    text = os.fspath(source)
    _check_faces(faces)
    if text == "synthetic" or text.startswith("synthetic:"):
        from fer_core.synthetic import make_faces

        n_text, _, seed_text = (text.partition(":")[2] or "1000").partition(":")
        if not n_text.isdigit() or int(n_text) < 14 or not (seed_text.isdigit() or seed_text == ""):
            raise DataError(f"data source {text!r}: expected 'synthetic', 'synthetic:N' or 'synthetic:N:SEED' "
                            f"with N >= 14")
        return make_faces(int(n_text), seed=int(seed_text or 0))
    path = Path(text).expanduser()
    if path.is_dir():
        return load_folder(path, faces=faces, cache=cache)
    if path.is_file():
        if _is_manifest(path):
            return load_manifest(path, faces=faces, cache=cache)
        return load_csv(path, faces=faces)
    raise DataError(f"data source {text!r}: no such file or folder "
                    "(expected a CSV file, a folder of class folders, or 'synthetic')")


def _check_faces(faces: str) -> None:
    if faces not in FACES:
        raise DataError(f"faces {faces!r}: expected one of {', '.join(FACES)}")


def load_csv(path: str | os.PathLike, faces: str = "auto") -> Dataset:
    """Read a CK+/FER2013 style CSV: ``emotion,pixels[,Usage]`` with a header line.

    Pixels are space-separated integers 0-255 making a square image of any size (resized
    to 48x48, or cropped to the face as ``faces`` says, see :func:`load`); labels are
    non-negative integers named by :data:`CSV_LABELS` and need not be contiguous. Every
    row is checked; the first bad one raises :class:`DataError` with its line number.
    """
    path = Path(path)
    _check_faces(faces)
    where = str(path)
    try:
        handle = open(path, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise DataError(f"{where}: cannot open ({exc.strerror})") from None
    csv.field_size_limit(CSV_FIELD_LIMIT)
    with handle, _csv_reader(handle, where) as reader:
        header = next(reader, None)
        if header is None or not any(cell.strip() for cell in header):
            raise DataError(f"{where}: file is empty; expected a header line 'emotion,pixels[,Usage]' "
                            "and one row per image")
        columns = _csv_columns(where, header)
        labels: list[int] = []
        pixels: list[np.ndarray] = []
        usage: list[str] = []
        lines: list[int] = []
        side = None
        for line, row in _data_rows(reader, header, where):
            labels.append(_parse_label(where, line, row[columns["emotion"]]))
            image, side = _parse_pixels(where, line, row[columns["pixels"]], side)
            pixels.append(image)
            lines.append(line)
            if "usage" in columns:
                usage.append(row[columns["usage"]].strip())
    if not labels:
        raise DataError(f"{where}: the header is there but no rows follow; expected one row per image")
    images, keep, report = _to_48(len(pixels), pixels.__getitem__, lambda i: f"{where}, line {lines[i]}",
                                  faces, where)
    raw = np.asarray(labels, dtype=np.int64)
    codes = np.unique(raw)
    names = tuple(CSV_LABELS.get(int(c), f"class_{int(c)}") for c in codes)
    return _finish(_Parts(images, np.searchsorted(codes, raw[keep]).astype(np.int64), names, None,
                          np.asarray(usage)[keep] if usage else None, report), where)


@contextlib.contextmanager
def _csv_reader(handle, where: str) -> Iterator:
    """A ``csv.reader`` of ``handle`` whose malformed CSV or non-text bytes are a :class:`DataError`."""
    reader = csv.reader(handle)
    try:
        yield reader
    except csv.Error as exc:
        raise DataError(f"{where}, line {reader.line_num}: not valid CSV ({exc})") from None
    except UnicodeDecodeError:
        raise DataError(f"{where}: not a text CSV file (expected UTF-8 text)") from None


def _data_rows(reader, header: Sequence[str], where: str) -> Iterator[tuple[int, list[str]]]:
    """The rows after the header that are not blank, with their line numbers; a row whose
    width differs from the header's is a :class:`DataError` naming its line."""
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise DataError(f"{where}, line {reader.line_num}: {len(row)} fields where the header has "
                            f"{len(header)} ({', '.join(header)})")
        yield reader.line_num, row


def _csv_columns(where: str, header: Sequence[str]) -> dict[str, int]:
    found = {cell.strip().lower(): i for i, cell in enumerate(header)}
    missing = [name for name in ("emotion", "pixels") if name not in found]
    if missing:
        hint = ""
        if len(header) == 1 and any(sep in header[0] for sep in (";", "\t", "|")):
            hint = " (the file seems to use another delimiter; expected commas)"
        elif any(cell.strip().isdigit() for cell in header):
            hint = " (the first line looks like data; expected a header line)"
        raise DataError(f"{where}, line 1: missing column(s) {', '.join(missing)}; expected a header "
                        f"'emotion,pixels[,Usage]', found {','.join(header)[:80]!r}{hint}")
    columns = {"emotion": found["emotion"], "pixels": found["pixels"]}
    if "usage" in found:
        columns["usage"] = found["usage"]
    return columns


def _parse_label(where: str, line: int, text: str) -> int:
    text = text.strip()
    if not text.isdigit():
        raise DataError(f"{where}, line {line}: emotion {text!r} is not a non-negative integer label")
    return int(text)


def _parse_pixels(where: str, line: int, text: str, side: Optional[int]) -> tuple[np.ndarray, int]:
    tokens = text.split()
    try:
        values = np.asarray(tokens, dtype=np.float64)
    except ValueError:
        bad = next(i for i, t in enumerate(tokens) if not _is_number(t))
        raise DataError(f"{where}, line {line}: pixel {bad + 1} is {tokens[bad][:20]!r}; "
                        "expected integers 0-255 separated by spaces") from None
    if values.size == 0:
        raise DataError(f"{where}, line {line}: pixels is empty; expected integers 0-255 separated by spaces")
    bad = np.flatnonzero((values < 0) | (values > 255) | (values != np.round(values)))
    if bad.size:
        raise DataError(f"{where}, line {line}: pixel {bad[0] + 1} is {tokens[bad[0]][:20]!r}; "
                        "expected integers 0-255")
    this_side = int(round(values.size ** 0.5))
    if this_side * this_side != values.size:
        raise DataError(f"{where}, line {line}: {values.size} pixels do not make a square image "
                        "(expected e.g. 2304 = 48x48)")
    if side is not None and this_side != side:
        raise DataError(f"{where}, line {line}: {values.size} pixels where earlier rows have "
                        f"{side * side} ({side}x{side}); all rows must have the same size")
    return values.astype(np.uint8).reshape(this_side, this_side), this_side


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------- manifests

def _is_manifest(path: Path) -> bool:
    """Whether a CSV's header names a ``path`` column (a manifest), not ``emotion,pixels``."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return False  # load_csv reports what is wrong with the file
    return "path" in {cell.strip().lower() for cell in header}


@dataclass(frozen=True)
class _Row:
    line: int
    path: Path
    label: str
    subject: Optional[str]
    usage: Optional[str]


def load_manifest(path: str | os.PathLike, faces: str = "auto", cache: bool = True) -> Dataset:
    """Read a manifest of image files: a CSV with header ``path,label[,subject][,usage]``.

    ``path`` is an image file relative to the CSV's folder (or absolute), ``label`` its
    class name (classes are the sorted distinct labels), ``subject`` a person's id (it
    becomes :attr:`Dataset.groups`, so a subject split keeps each person on one side) and
    ``usage`` one of Training, PublicTest, PrivateTest. Images are decoded and cropped as
    ``faces`` says (see :func:`load`). A missing file, an empty label or subject, an
    unknown usage or an unreadable image raises :class:`DataError` naming the line.

    Example (``photos.csv``)::

        path,label,subject
        alice/smile1.jpg,happy,alice
        alice/frown.jpg,sad,alice
        bob/IMG_0042.jpg,happy,bob
    """
    path = Path(path)
    _check_faces(faces)
    rows = _read_manifest(path)
    where = str(path)

    def build() -> _Parts:
        images, keep, report = _to_48(len(rows), lambda i: _decode(rows[i].path, _row_where(where, rows[i])),
                                      lambda i: _row_where(where, rows[i]), faces, where)
        names = sorted({row.label for row in rows})
        labels = np.asarray([names.index(row.label) for row in rows], dtype=np.int64)
        groups = np.asarray([row.subject for row in rows]) if rows[0].subject is not None else None
        usage = np.asarray([row.usage for row in rows]) if rows[0].usage is not None else None
        return _Parts(images, labels[keep], tuple(names), None if groups is None else groups[keep],
                      None if usage is None else usage[keep], report)

    parts = _cached(path, [path] + [row.path for row in rows], faces, build, cache)
    return _finish(parts, where)


def _row_where(where: str, row: _Row) -> str:
    return f"{where}, line {row.line}: image {row.path}"


def _read_manifest(path: Path) -> list[_Row]:
    where = str(path)
    expected = "expected a header 'path,label[,subject][,usage]'"
    try:
        handle = open(path, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise DataError(f"{where}: cannot open ({exc.strerror})") from None
    rows: list[_Row] = []
    with handle, _csv_reader(handle, where) as reader:
        header = [cell.strip().lower() for cell in next(reader, [])]
        unknown = [cell for cell in header if cell not in MANIFEST_COLUMNS]
        if unknown or "label" not in header or len(set(header)) != len(header):
            problem = f"unknown column {unknown[0]!r}" if unknown else (
                "no label column" if "label" not in header else "a column named twice")
            raise DataError(f"{where}, line 1: {problem}; {expected}, found {','.join(header)[:80]!r}")
        column = {name: header.index(name) for name in header}
        for line, row in _data_rows(reader, header, where):
            rows.append(_manifest_row(path, line, {name: row[i].strip() for name, i in column.items()}))
    if not rows:
        raise DataError(f"{where}: the header is there but no rows follow; expected one row per image")
    return rows


def _manifest_row(manifest: Path, line: int, cells: dict[str, str]) -> _Row:
    where = f"{manifest}, line {line}"
    if not cells["path"]:
        raise DataError(f"{where}: path is empty; expected an image file relative to {manifest.parent}")
    image = manifest.parent / Path(cells["path"]).expanduser()
    if not image.is_file():
        raise DataError(f"{where}: image {cells['path']!r} not found; expected an image file "
                        f"relative to {manifest.parent}")
    if not cells["label"]:
        raise DataError(f"{where}: label is empty; expected a class name such as happy")
    subject = cells.get("subject")
    if subject == "":
        raise DataError(f"{where}: subject is empty; expected a subject id (a person's name or number)")
    usage = cells.get("usage")
    if usage is not None:
        canonical = {value.lower(): value for value in USAGE_VALUES}.get(usage.lower())
        if canonical is None:
            raise DataError(f"{where}: usage {usage!r}; expected one of {', '.join(USAGE_VALUES)}")
        usage = canonical
    return _Row(line, image, cells["label"], subject, usage)


# --------------------------------------------------------------------------- folders

def load_folder(root: str | os.PathLike, faces: str = "auto", cache: bool = True) -> Dataset:
    """Read a folder of class folders of images (CK+48 layout, FER2013 image layout).

    ``root/<class>/<image>``; or ``root/train/<class>/…`` and ``root/test/<class>/…``,
    whose folder becomes each image's usage unless the file name starts with its Usage
    (FER2013's ``Training_``, ``PublicTest_``, ``PrivateTest_``), which wins. Subject ids
    come from CK+ style file names (``S010_004_00000017.png``) when every file has one;
    for other photos a manifest (:func:`load_manifest`) gives them. Images are decoded
    and cropped as ``faces`` says (see :func:`load`). Files that are not images (by
    suffix) are skipped with a warning; an image that cannot be decoded, an empty class
    folder or fewer than two classes raise :class:`DataError`.
    """
    root = Path(root)
    _check_faces(faces)
    subdirs = _subfolders(root)
    if subdirs and all(d.name.lower() in USAGE_FOLDERS for d in subdirs):
        parts = [(USAGE_FOLDERS[d.name.lower()], _class_files(d)) for d in subdirs]
        names = sorted({name for _, classes in parts for name in classes})
        files = [(f, names.index(name), _file_usage(f) or usage) for usage, classes in parts
                 for name, paths in classes.items() for f in paths]
    else:
        classes = _class_files(root)
        names = sorted(classes)
        files = [(f, i, _file_usage(f)) for i, name in enumerate(names) for f in classes[name]]
        if not all(usage for _, _, usage in files):
            files = [(f, i, None) for f, i, _ in files]
    paths = [f for f, _, _ in files]

    def build() -> _Parts:
        images, keep, report = _to_48(len(paths), lambda i: _decode(paths[i], str(paths[i])),
                                      lambda i: str(paths[i]), faces, str(root))
        matches = [SUBJECT_PATTERN.match(p.stem) for p in paths]
        groups = np.asarray([m.group(1) for m in matches])[keep] if all(matches) else None
        usage = np.asarray([u for _, _, u in files])[keep] if files[0][2] is not None else None
        labels = np.asarray([c for _, c, _ in files], dtype=np.int64)[keep]
        return _Parts(images, labels, tuple(names), groups, usage, report)

    return _finish(_cached(root, paths, faces, build, cache), str(root))


def _file_usage(path: Path) -> Optional[str]:
    match = USAGE_PREFIX.match(path.name)
    return match.group(1) if match else None


def _subfolders(root: Path) -> list[Path]:
    try:
        return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as exc:
        raise DataError(f"{root}: cannot list folder ({exc.strerror})") from None


def _class_files(root: Path) -> dict[str, list[Path]]:
    classes: dict[str, list[Path]] = {}
    subdirs = _subfolders(root)
    if not subdirs:
        raise DataError(f"{root}: no class folders; expected one sub-folder of images per class "
                        "(e.g. anger/, happy/)")
    for folder in subdirs:
        entries = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        images = [p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES]
        if not images:
            raise DataError(f"{folder}: class folder holds no images; expected files ending in "
                            f"{', '.join(IMAGE_SUFFIXES[:4])}, ...")
        skipped = len(entries) - len(images)
        if skipped:
            log.warning("%s: skipped %d file(s) that are not images (by suffix)", folder, skipped)
        classes[folder.name] = images
    return classes


# --------------------------------------------------------------------------- images and faces

@dataclass(frozen=True)
class _Parts:
    """A loaded data set before it becomes a :class:`Dataset`: what a cache entry holds."""

    images: np.ndarray  # uint8 [N, 48, 48]
    labels: np.ndarray
    class_names: tuple[str, ...]
    groups: Optional[np.ndarray]
    usage: Optional[np.ndarray]
    faces: FaceReport


def _finish(parts: _Parts, source: str) -> Dataset:
    dataset = Dataset(images=_to_float(parts.images), labels=parts.labels, class_names=parts.class_names,
                      groups=parts.groups, usage=parts.usage, source=source, faces=parts.faces)
    _check_classes(dataset, source)
    why = ""
    if parts.faces.asked == "auto":
        why = (" (most sampled images are photos with a small face)" if parts.faces.mode == "crop" else
               " (most sampled images are 48x48, face crops or show no face)")
    log.info("%s: %d images; %s%s", source, len(dataset), parts.faces.describe(), why)
    return dataset


def read_gray(path: str | os.PathLike, where: Optional[str] = None) -> np.ndarray:
    """Decode an image file into a 2-D ``uint8`` grayscale array at its own size, as loading does.

    The image is turned upright by its EXIF orientation first, so an inference command line
    that decodes through here and crops with :func:`fer_core.faces.largest_face_crop` sees
    what training saw. A file that cannot be decoded raises :class:`DataError` naming
    ``where`` (the path by default).
    """
    return _decode(Path(path), str(path) if where is None else where)


def _decode(path: Path, where: str) -> np.ndarray:
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            # Phone photos store their rotation in EXIF; without this a portrait face lies on its side.
            return np.asarray(ImageOps.exif_transpose(image).convert("L"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{where}: cannot decode image ({type(exc).__name__}); "
                        "expected a readable PNG/JPEG/BMP file") from None


def _to_48(count: int, decode: Callable[[int], np.ndarray], where: Callable[[int], str],
           faces: str, place: str) -> tuple[np.ndarray, np.ndarray, FaceReport]:
    """Decode ``count`` images and make each 48x48: resized as is, or cropped to its largest face.

    Returns the kept images, a mask of which were kept (images without a face are left
    out) and the :class:`FaceReport`. Most images without a face is a :class:`DataError`
    naming ``place``: cropping cannot be what the user meant.
    """
    mode = _face_mode(count, decode, faces)
    out = np.empty((count, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    keep = np.ones(count, dtype=bool)
    missing: list[str] = []
    for i in _progress(range(count), "finding faces" if mode == "crop" else "reading images"):
        gray = decode(i)
        if mode == "none":
            out[i] = _resize(gray)
            continue
        crop = largest_face_crop(gray, size=IMAGE_SIZE)
        if crop is None:
            keep[i] = False
            missing.append(where(i))
        else:
            out[i] = crop
    if missing:
        if 2 * len(missing) > count:
            raise DataError(f"{place}: no face found in {len(missing)} of {count} images (e.g. {missing[0]}); "
                            "expected photos with a frontal face, or faces='none' for images that are already "
                            "face crops")
        log.warning("%s: no face found in %d of %d images; left out: %s%s", place, len(missing), count,
                    ", ".join(missing[:5]), ", ..." if len(missing) > 5 else "")
    report = FaceReport(mode=mode, asked=faces, cropped=int(keep.sum()) if mode == "crop" else 0,
                        no_face=tuple(missing))
    return out[keep], keep, report


def _face_mode(count: int, decode: Callable[[int], np.ndarray], faces: str) -> str:
    if faces != "auto":
        return faces
    sample = np.unique(np.linspace(0, count - 1, min(FACE_SAMPLE, count)).round().astype(int))
    # Logged by _finish once the data set is known good, so that an error stays one line.
    return "crop" if needs_cropping([decode(int(i)) for i in sample]) else "none"


def _resize(gray: np.ndarray) -> np.ndarray:
    if gray.shape == (IMAGE_SIZE, IMAGE_SIZE):
        return gray
    from PIL import Image

    return np.asarray(Image.fromarray(gray).resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR))


def _progress(items: Sequence, what: str):
    if len(items) < PROGRESS_MIN_IMAGES:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=what, unit="img", disable=None)


def _to_float(images_u8: np.ndarray) -> np.ndarray:
    return (images_u8.astype(np.float32) / 255.0)[..., np.newaxis]


def _check_classes(dataset: Dataset, where: str) -> None:
    if dataset.n_classes < 2:
        raise DataError(f"{where}: only one class ({dataset.class_names[0]}); expected at least two")


# --------------------------------------------------------------------------- cache

def _cache_dir() -> Optional[Path]:
    """``$FER_TUNE_CACHE``, else ``$XDG_CACHE_HOME/fer_tune`` or ``~/.cache/fer_tune``; None when turned off."""
    setting = os.environ.get(CACHE_ENV, "").strip()
    if setting.lower() in ("off", "0", "no", "none"):
        return None
    if setting:
        return Path(setting).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fer_tune"


def _cached(place: Path, files: Sequence[Path], faces: str, build: Callable[[], _Parts], use: bool) -> _Parts:
    """``build()``'s result, from the cache when the same files were loaded with the same options.

    The key hashes every file's path, size and modification time with the options, so a
    changed, added or removed file misses; a corrupt entry is ignored and rebuilt.
    """
    directory = _cache_dir() if use and len(files) >= CACHE_MIN_FILES else None
    if directory is None:
        return build()
    digest = hashlib.sha256(f"v{CACHE_VERSION} size={IMAGE_SIZE} faces={faces} {DETECTOR}".encode())
    for file in files:
        try:
            stat = file.stat()
        except OSError as exc:
            raise DataError(f"{file}: cannot read ({exc.strerror})") from None
        digest.update(f"\n{os.path.abspath(file)}\t{stat.st_size}\t{stat.st_mtime_ns}".encode())
    key = digest.hexdigest()
    # One entry per folder and option: a new entry replaces the older one of the same prefix.
    prefix = hashlib.sha256(f"{place.resolve()} faces={faces}".encode()).hexdigest()[:12]
    entry = directory / f"{prefix}-{key[:24]}.npz"
    parts = _read_cache(entry, key)
    if parts is not None:
        log.debug("%s: %d decoded images from the cache (%s)", place, len(parts.labels), entry)
        return parts
    parts = build()
    _write_cache(entry, key, parts)
    return parts


def _read_cache(entry: Path, key: str) -> Optional[_Parts]:
    if not entry.is_file():
        return None
    try:
        with np.load(entry, allow_pickle=False) as saved:
            if str(saved["key"]) != key:
                raise ValueError("key mismatch")
            images, labels = saved["images"], saved["labels"]
            if images.shape != (len(labels), IMAGE_SIZE, IMAGE_SIZE) or images.dtype != np.uint8:
                raise ValueError(f"images of shape {images.shape}")
            report = FaceReport(mode=str(saved["faces_mode"]), asked=str(saved["faces_asked"]),
                                cropped=int(saved["faces_cropped"]),
                                no_face=tuple(str(f) for f in saved["faces_no_face"]))
            return _Parts(images, labels.astype(np.int64), tuple(str(c) for c in saved["class_names"]),
                          saved["groups"] if "groups" in saved.files else None,
                          saved["usage"] if "usage" in saved.files else None, report)
    except Exception as exc:  # noqa: BLE001 - a damaged file fails in many ways (zip, npy, key); all mean rebuild
        log.warning("%s: ignoring unreadable cache entry (%s); decoding the images again", entry, exc)
        return None


def _write_cache(entry: Path, key: str, parts: _Parts) -> None:
    arrays = {"key": np.asarray(key), "images": parts.images, "labels": parts.labels,
              "class_names": np.asarray(parts.class_names), "faces_mode": np.asarray(parts.faces.mode),
              "faces_asked": np.asarray(parts.faces.asked), "faces_cropped": np.asarray(parts.faces.cropped),
              "faces_no_face": np.asarray(parts.faces.no_face, dtype=str)}
    if parts.groups is not None:
        arrays["groups"] = np.asarray(parts.groups, dtype=str)
    if parts.usage is not None:
        arrays["usage"] = np.asarray(parts.usage, dtype=str)
    temp = None
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        # Write beside the entry, then rename: a reader never sees half a file.
        handle, temp = tempfile.mkstemp(dir=entry.parent, prefix=entry.stem, suffix=".tmp")
        with os.fdopen(handle, "wb") as out:
            np.savez(out, **arrays)
        os.replace(temp, entry)
        temp = None
        for old in entry.parent.glob(f"{entry.name.split('-')[0]}-*.npz"):
            if old != entry:  # the same folder and options with other files: stale
                old.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("%s: cannot write the cache (%s); the next load decodes again", entry.parent, exc)
    finally:
        if temp is not None:
            Path(temp).unlink(missing_ok=True)
