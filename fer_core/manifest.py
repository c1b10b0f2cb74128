"""Read a manifest of the user's own photos: a CSV of ``path,label[,subject][,usage]``.

Each line names an image file (relative to the manifest's folder), its class and,
optionally, the person in it and the FER2013 Usage it belongs to; the images are decoded
and cropped like any other image set (:mod:`fer_core.images`) and cached
(:mod:`fer_core.cache`).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from fer_core.cache import cached
from fer_core.csvfile import data_rows, open_csv
from fer_core.dataset import Dataset
from fer_core.errors import DataError
from fer_core.images import DecodedImages, check_faces, finish, read_gray, to_faces

MANIFEST_COLUMNS = ("path", "label", "subject", "usage")  # the user's own photos: path,label[,subject][,usage]

# FER2013's Usage values: Training trains, PublicTest validates, PrivateTest is the held-out test.
USAGE_VALUES = ("Training", "PublicTest", "PrivateTest")


def is_manifest(path: Path) -> bool:
    """Whether a CSV's header names a ``path`` column (a manifest), not ``emotion,pixels``."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return False  # fer_core.data.load_csv reports what is wrong with the file
    return "path" in {cell.strip().lower() for cell in header}


@dataclass(frozen=True)
class _Row:
    """One checked line of a manifest: the image's path (resolved), its label, subject and usage."""

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
    ``faces`` says (see :func:`fer_core.data.load`). A missing file, an empty label or subject, an
    unknown usage or an unreadable image raises :class:`DataError` naming the line.

    Example (``photos.csv``)::

        path,label,subject
        alice/smile1.jpg,happy,alice
        alice/frown.jpg,sad,alice
        bob/IMG_0042.jpg,happy,bob
    """
    path = Path(path)
    check_faces(faces)
    rows = _read_manifest(path)
    where = str(path)

    def build() -> DecodedImages:
        images, keep, report = to_faces(len(rows), lambda i: read_gray(rows[i].path, _row_where(where, rows[i])),
                                        lambda i: _row_where(where, rows[i]), faces, where)
        names = sorted({row.label for row in rows})
        labels = np.asarray([names.index(row.label) for row in rows], dtype=np.int64)
        groups = np.asarray([row.subject for row in rows]) if rows[0].subject is not None else None
        usage = np.asarray([row.usage for row in rows]) if rows[0].usage is not None else None
        return DecodedImages(images, labels[keep], tuple(names), None if groups is None else groups[keep],
                             None if usage is None else usage[keep], report)

    parts = cached(path, [path] + [row.path for row in rows], faces, build, cache)
    return finish(parts, where)


def _row_where(where: str, row: _Row) -> str:
    return f"{where}, line {row.line}: image {row.path}"


def _read_manifest(path: Path) -> list[_Row]:
    where = str(path)
    expected = "expected a header 'path,label[,subject][,usage]'"
    rows: list[_Row] = []
    with open_csv(path) as reader:
        header = [cell.strip().lower() for cell in next(reader, [])]
        unknown = [cell for cell in header if cell not in MANIFEST_COLUMNS]
        if unknown or "label" not in header or len(set(header)) != len(header):
            problem = f"unknown column {unknown[0]!r}" if unknown else (
                "no label column" if "label" not in header else "a column named twice")
            raise DataError(f"{where}, line 1: {problem}; {expected}, found {','.join(header)[:80]!r}")
        column = {name: header.index(name) for name in header}
        for line, row in data_rows(reader, header, where):
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
