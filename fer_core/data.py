"""Load a facial-expression data set from any source into one :class:`~fer_core.dataset.Dataset`.

Sources: the Kaggle CK+ CSV (``ckextended.csv``) and FER2013's ``fer2013.csv``
(``emotion,pixels[,Usage]``, pixel strings of any square size), a manifest CSV of the
user's own photos (``path,label[,subject][,usage]``, read by :mod:`fer_core.manifest`), a
folder of class folders of images (the CK+48 layout, or FER2013's ``train/`` and ``test/``
image layout, whose ``Training_``/``PublicTest_``/``PrivateTest_`` file-name prefixes are
its Usage column), and the built-in synthetic faces (``synthetic``, ``synthetic:N``, or
``synthetic:N:SEED`` for other faces). Every image becomes 48x48 grayscale ``float32`` in
[0, 1]; photos that are not face crops are cropped to their largest face
(:mod:`fer_core.images`). Decoded image sets of many files are cached outside the
repository (:mod:`fer_core.cache`).

Bad input raises :class:`~fer_core.errors.DataError` naming the file, the line or the
folder and what was expected; nothing here prints or exits.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from fer_core.cache import cached
from fer_core.csvfile import data_rows, open_csv
from fer_core.dataset import Dataset
from fer_core.errors import DataError
from fer_core.images import IMAGE_SUFFIXES, DecodedImages, check_faces, finish, read_gray, to_faces
from fer_core.manifest import is_manifest, load_manifest
from fer_core.synthetic import make_faces

log = logging.getLogger(__name__)


# The label map of the Kaggle CK+ CSV (ckextended.csv); FER2013 uses the same codes 0-6.
CSV_LABELS = {0: "anger", 1: "disgust", 2: "fear", 3: "happiness", 4: "sadness",
              5: "surprise", 6: "neutral", 7: "contempt"}

# CK+ file names: S010_004_00000017.png is subject S010, sequence 004, frame 17.
SUBJECT_PATTERN = re.compile(r"^(S\d+)_(\d+)_(\d+)$")

# FER2013's image layout splits by folder; map them onto the CSV's Usage values. A file
# whose name carries its Usage (below) overrides its folder: FER2013's test/ holds both.
USAGE_FOLDERS = {"train": "Training", "training": "Training", "val": "PublicTest",
                 "validation": "PublicTest", "publictest": "PublicTest",
                 "test": "PrivateTest", "privatetest": "PrivateTest"}

# Kaggle's FER2013 images are named by their row's Usage: Training_*, PublicTest_*, PrivateTest_*.
USAGE_PREFIX = re.compile(r"^(Training|PublicTest|PrivateTest)_")

CSV_FIELD_LIMIT = 64 * 2**20  # bytes in one pixel string: far above any real image (csv's default is 128 KiB)


# --------------------------------------------------------------------------- loading

def load(source: str | os.PathLike, faces: str = "auto", cache: bool = True) -> Dataset:
    """Load a data set from a CSV file, a folder of class folders, or ``synthetic[:N]``.

    The kind is told by the source itself: ``synthetic`` or ``synthetic:N`` for the
    built-in faces (1,000 by default), a folder for images, a file for a CSV (a manifest
    of image files when its header has a ``path`` column, else pixel rows). ``faces`` is
    ``"auto"`` (images that are 48x48 or already face crops are left alone, photos are
    cropped to their largest face; the decision is logged), ``"crop"`` or ``"none"``.
    Folders and manifests of :data:`fer_core.cache.CACHE_MIN_FILES` images or more are decoded
    once and cached under ``$FER_TUNE_CACHE`` (else ``~/.cache/fer_tune``); ``cache=False`` neither
    reads nor writes the cache. Raises :class:`DataError` for anything that cannot be read,
    naming where and why.
    """
    text = os.fspath(source)
    check_faces(faces)
    if text == "synthetic" or text.startswith("synthetic:"):
        n_text, _, seed_text = (text.partition(":")[2] or "1000").partition(":")
        if not n_text.isdigit() or int(n_text) < 14 or not (seed_text.isdigit() or seed_text == ""):
            raise DataError(f"data source {text!r}: expected 'synthetic', 'synthetic:N' or 'synthetic:N:SEED' "
                            f"with N >= 14")
        return make_faces(int(n_text), seed=int(seed_text or 0))
    path = Path(text).expanduser()
    if path.is_dir():
        return load_folder(path, faces=faces, cache=cache)
    if path.is_file():
        if is_manifest(path):
            return load_manifest(path, faces=faces, cache=cache)
        return load_csv(path, faces=faces)
    raise DataError(f"data source {text!r}: no such file or folder "
                    "(expected a CSV file, a folder of class folders, or 'synthetic')")


def load_csv(path: str | os.PathLike, faces: str = "auto") -> Dataset:
    """Read a CK+/FER2013 style CSV: ``emotion,pixels[,Usage]`` with a header line.

    Pixels are space-separated integers 0-255 making a square image of any size (resized
    to 48x48, or cropped to the face as ``faces`` says, see :func:`load`); labels are
    non-negative integers named by :data:`CSV_LABELS` and need not be contiguous. Every
    row is checked; the first bad one raises :class:`DataError` with its line number.
    """
    path = Path(path)
    check_faces(faces)
    where = str(path)
    csv.field_size_limit(CSV_FIELD_LIMIT)
    with open_csv(path) as reader:
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
        for line, row in data_rows(reader, header, where):
            labels.append(_parse_label(where, line, row[columns["emotion"]]))
            image, side = _parse_pixels(where, line, row[columns["pixels"]], side)
            pixels.append(image)
            lines.append(line)
            if "usage" in columns:
                usage.append(row[columns["usage"]].strip())
    if not labels:
        raise DataError(f"{where}: the header is there but no rows follow; expected one row per image")
    images, keep, report = to_faces(len(pixels), pixels.__getitem__, lambda i: f"{where}, line {lines[i]}",
                                    faces, where)
    raw = np.asarray(labels, dtype=np.int64)
    codes = np.unique(raw)
    names = tuple(CSV_LABELS.get(int(c), f"class_{int(c)}") for c in codes)
    return finish(DecodedImages(images, np.searchsorted(codes, raw[keep]).astype(np.int64), names, None,
                                np.asarray(usage)[keep] if usage else None, report), where)


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


# --------------------------------------------------------------------------- folders

def load_folder(root: str | os.PathLike, faces: str = "auto", cache: bool = True) -> Dataset:
    """Read a folder of class folders of images (CK+48 layout, FER2013 image layout).

    ``root/<class>/<image>``; or ``root/train/<class>/…`` and ``root/test/<class>/…``,
    whose folder becomes each image's usage unless the file name starts with its Usage
    (FER2013's ``Training_``, ``PublicTest_``, ``PrivateTest_``), which wins. Subject ids
    come from CK+ style file names (``S010_004_00000017.png``) when every file has one;
    for other photos a manifest (:func:`fer_core.manifest.load_manifest`) gives them. Images are decoded
    and cropped as ``faces`` says (see :func:`load`). Files that are not images (by
    suffix) are skipped with a warning; an image that cannot be decoded, an empty class
    folder or fewer than two classes raise :class:`DataError`.
    """
    root = Path(root)
    check_faces(faces)
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

    def build() -> DecodedImages:
        images, keep, report = to_faces(len(paths), lambda i: read_gray(paths[i]),
                                        lambda i: str(paths[i]), faces, str(root))
        matches = [SUBJECT_PATTERN.match(p.stem) for p in paths]
        groups = np.asarray([m.group(1) for m in matches])[keep] if all(matches) else None
        usage = np.asarray([u for _, _, u in files])[keep] if files[0][2] is not None else None
        labels = np.asarray([c for _, c, _ in files], dtype=np.int64)[keep]
        return DecodedImages(images, labels, tuple(names), groups, usage, report)

    return finish(cached(root, paths, faces, build, cache), str(root))


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
