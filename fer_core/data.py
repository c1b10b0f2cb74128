"""Load facial-expression data sets into one small container, validate them, split them.

Sources: the Kaggle CK+ CSV (``ckextended.csv``) and FER2013's ``fer2013.csv``
(``emotion,pixels[,Usage]``, pixel strings of any square size), a folder of class
folders of images (the CK+48 layout, or FER2013's ``train/`` and ``test/`` image layout),
and the built-in synthetic faces (``synthetic`` or ``synthetic:N``). Every image becomes
48x48 grayscale ``float32`` in [0, 1].

Bad input raises :class:`~fer_core.errors.DataError` naming the file, the line or the
folder and what was expected; nothing here prints or exits.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from fer_core.errors import DataError

log = logging.getLogger(__name__)

IMAGE_SIZE = 48  # CK+48 and FER2013 are 48x48; every model here takes 48x48x1

# The label map of the Kaggle CK+ CSV (ckextended.csv); FER2013 uses the same codes 0-6.
CSV_LABELS = {0: "anger", 1: "disgust", 2: "fear", 3: "happiness", 4: "sadness",
              5: "surprise", 6: "neutral", 7: "contempt"}

# CK+ file names: S010_004_00000017.png is subject S010, sequence 004, frame 17.
SUBJECT_PATTERN = re.compile(r"^(S\d+)_(\d+)_(\d+)$")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".pgm", ".webp")

# FER2013's image layout splits by folder; map them onto the CSV's Usage values.
USAGE_FOLDERS = {"train": "Training", "training": "Training", "val": "PublicTest",
                 "validation": "PublicTest", "publictest": "PublicTest",
                 "test": "PrivateTest", "privatetest": "PrivateTest"}


CSV_FIELD_LIMIT = 64 * 2**20  # bytes in one pixel string: far above any real image (csv's default is 128 KiB)
PROGRESS_MIN_FILES = 2000  # show a progress bar only for folders this large


@dataclass(frozen=True, eq=False)
class Dataset:
    """Images, integer labels and what travels with them.

    ``images`` is ``float32 [N, 48, 48, 1]`` in [0, 1]; ``labels`` is ``int64 [N]`` in
    ``0..len(class_names)-1``; ``groups`` holds a subject id per image when the source
    has them, ``usage`` the CSV's Usage value (or the FER2013 folder it came from).
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    groups: Optional[np.ndarray] = None
    usage: Optional[np.ndarray] = None
    source: str = ""

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def n_classes(self) -> int:
        """Number of classes (from the data, not from a fixed label map)."""
        return len(self.class_names)

    def class_counts(self) -> np.ndarray:
        """Images per class, indexed like ``class_names``."""
        return np.bincount(self.labels, minlength=self.n_classes)

    def subset(self, index: np.ndarray) -> "Dataset":
        """The images at ``index``, with their labels, groups and usage."""
        return replace(self, images=self.images[index], labels=self.labels[index],
                       groups=None if self.groups is None else self.groups[index],
                       usage=None if self.usage is None else self.usage[index])

    def concat(self, other: "Dataset") -> "Dataset":
        """This data set followed by ``other`` (same classes), e.g. train + validation."""
        if other.class_names != self.class_names:
            raise ValueError("cannot join data sets with different classes")
        both = lambda a, b: None if a is None or b is None else np.concatenate([a, b])  # noqa: E731
        return replace(self, images=np.concatenate([self.images, other.images]),
                       labels=np.concatenate([self.labels, other.labels]),
                       groups=both(self.groups, other.groups), usage=both(self.usage, other.usage))

    def fingerprint(self) -> str:
        """A short content hash of images, labels and class names, for model cards."""
        digest = hashlib.sha256()
        digest.update("\n".join(self.class_names).encode())
        digest.update(np.ascontiguousarray(self.labels, dtype=np.int64).tobytes())
        digest.update(np.ascontiguousarray((self.images * 255).round().astype(np.uint8)).tobytes())
        return digest.hexdigest()[:16]

    def describe(self) -> str:
        """One line: size, classes with counts, subjects."""
        counts = ", ".join(f"{n} {c}" for n, c in zip(self.class_names, self.class_counts()))
        subjects = f", {len(np.unique(self.groups))} subjects" if self.groups is not None else ""
        return f"{len(self)} images, {self.n_classes} classes ({counts}){subjects}"


# --------------------------------------------------------------------------- loading

def load(source: str | os.PathLike) -> Dataset:
    """Load a data set from a CSV file, a folder of class folders, or ``synthetic[:N]``.

    The kind is told by the source itself: ``synthetic`` or ``synthetic:N`` for the
    built-in faces (1,000 by default), a folder for images, a file for a CSV. Raises
    :class:`DataError` for anything that cannot be read, naming where and why.
    """
    text = os.fspath(source)
    if text == "synthetic" or text.startswith("synthetic:"):
        from fer_core.synthetic import make_faces

        n_text = text.partition(":")[2] or "1000"
        if not n_text.isdigit() or int(n_text) < 14:
            raise DataError(f"data source {text!r}: expected 'synthetic' or 'synthetic:N' with N >= 14")
        return make_faces(int(n_text))
    path = Path(text).expanduser()
    if path.is_dir():
        return load_folder(path)
    if path.is_file():
        return load_csv(path)
    raise DataError(f"data source {text!r}: no such file or folder "
                    "(expected a CSV file, a folder of class folders, or 'synthetic')")


def load_csv(path: str | os.PathLike) -> Dataset:
    """Read a CK+/FER2013 style CSV: ``emotion,pixels[,Usage]`` with a header line.

    Pixels are space-separated integers 0-255 making a square image of any size (resized
    to 48x48); labels are non-negative integers named by :data:`CSV_LABELS` and need not
    be contiguous. Every row is checked; the first bad one raises :class:`DataError`
    with its line number.
    """
    path = Path(path)
    where = str(path)
    try:
        handle = open(path, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise DataError(f"{where}: cannot open ({exc.strerror})") from None
    csv.field_size_limit(CSV_FIELD_LIMIT)
    with handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
            if header is None or not any(cell.strip() for cell in header):
                raise DataError(f"{where}: file is empty; expected a header line 'emotion,pixels[,Usage]' "
                                "and one row per image")
            columns = _csv_columns(where, header)
            labels: list[int] = []
            pixels: list[np.ndarray] = []
            usage: list[str] = []
            side = None
            for row in reader:
                line = reader.line_num
                if not any(cell.strip() for cell in row):
                    continue
                if len(row) != len(header):
                    raise DataError(f"{where}, line {line}: {len(row)} fields where the header has "
                                    f"{len(header)} ({', '.join(header)})")
                labels.append(_parse_label(where, line, row[columns["emotion"]]))
                image, side = _parse_pixels(where, line, row[columns["pixels"]], side)
                pixels.append(image)
                if "usage" in columns:
                    usage.append(row[columns["usage"]].strip())
        except csv.Error as exc:
            raise DataError(f"{where}, line {reader.line_num}: not valid CSV ({exc})") from None
        except UnicodeDecodeError:
            raise DataError(f"{where}: not a text CSV file (expected UTF-8 text)") from None
    if not labels:
        raise DataError(f"{where}: the header is there but no rows follow; expected one row per image")
    images = np.stack(pixels)
    if side != IMAGE_SIZE:
        images = _resize_all(images)
    raw = np.asarray(labels, dtype=np.int64)
    codes = np.unique(raw)
    names = tuple(CSV_LABELS.get(int(c), f"class_{int(c)}") for c in codes)
    dataset = Dataset(images=_to_float(images), labels=np.searchsorted(codes, raw).astype(np.int64),
                      class_names=names, usage=np.asarray(usage) if usage else None, source=where)
    _check_classes(dataset, where)
    return dataset


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


def load_folder(root: str | os.PathLike) -> Dataset:
    """Read a folder of class folders of images (CK+48 layout, FER2013 image layout).

    ``root/<class>/<image>``; or ``root/train/<class>/…`` and ``root/test/<class>/…``,
    whose folder becomes each image's usage. Subject ids come from CK+ style file
    names (``S010_004_00000017.png``) when every file has one. Files that are not
    images (by suffix) are skipped with a warning; an image that cannot be decoded, an
    empty class folder or fewer than two classes raise :class:`DataError`.
    """
    root = Path(root)
    subdirs = _subfolders(root)
    if subdirs and all(d.name.lower() in USAGE_FOLDERS for d in subdirs):
        parts = [(USAGE_FOLDERS[d.name.lower()], _class_files(d)) for d in subdirs]
        names = sorted({name for _, classes in parts for name in classes})
        files = [(f, names.index(name), usage) for usage, classes in parts
                 for name, paths in classes.items() for f in paths]
    else:
        classes = _class_files(root)
        names = sorted(classes)
        files = [(f, i, None) for i, name in enumerate(names) for f in classes[name]]
    images = _read_images([f for f, _, _ in files])
    stems = [f.stem for f, _, _ in files]
    matches = [SUBJECT_PATTERN.match(s) for s in stems]
    groups = np.asarray([m.group(1) for m in matches]) if all(matches) else None
    usage = np.asarray([u for _, _, u in files]) if files[0][2] is not None else None
    dataset = Dataset(images=_to_float(images), labels=np.asarray([c for _, c, _ in files], dtype=np.int64),
                      class_names=tuple(names), groups=groups, usage=usage, source=str(root))
    _check_classes(dataset, str(root))
    return dataset


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


def _read_images(paths: list[Path]) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    out = np.empty((len(paths), IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    for i, path in enumerate(_progress(paths, "reading images")):
        try:
            with Image.open(path) as image:
                gray = image.convert("L")
                if gray.size != (IMAGE_SIZE, IMAGE_SIZE):
                    gray = gray.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
                out[i] = np.asarray(gray, dtype=np.uint8)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise DataError(f"{path}: cannot decode image ({type(exc).__name__}); "
                            "expected a readable PNG/JPEG/BMP file") from None
    return out


def _progress(items: list, what: str):
    if len(items) < PROGRESS_MIN_FILES:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=what, unit="img", disable=None)


def _resize_all(images: np.ndarray) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(im).resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR))
                     for im in images])


def _to_float(images_u8: np.ndarray) -> np.ndarray:
    return (images_u8.astype(np.float32) / 255.0)[..., np.newaxis]


def _check_classes(dataset: Dataset, where: str) -> None:
    if dataset.n_classes < 2:
        raise DataError(f"{where}: only one class ({dataset.class_names[0]}); expected at least two")
