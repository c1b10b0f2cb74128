"""Read a CSV file row by row, so that every problem is a :class:`~fer_core.errors.DataError` naming file and line.

The pixel CSV reader (:func:`fer_core.data.load_csv`) and the manifest reader
(:func:`fer_core.manifest.load_manifest`) share it.
"""

from __future__ import annotations

import contextlib
import csv
import os
from typing import Iterator, Sequence

from fer_core.errors import DataError


@contextlib.contextmanager
def open_csv(path: str | os.PathLike) -> Iterator:
    """A ``csv.reader`` of the UTF-8 file at ``path`` (a byte-order mark is skipped).

    A file that cannot be opened, malformed CSV and bytes that are not text raise
    :class:`DataError` naming the file (and the line, where there is one).
    """
    where = str(path)
    try:
        handle = open(path, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise DataError(f"{where}: cannot open ({exc.strerror})") from None
    with handle:
        reader = csv.reader(handle)
        try:
            yield reader
        except csv.Error as exc:
            raise DataError(f"{where}, line {reader.line_num}: not valid CSV ({exc})") from None
        except UnicodeDecodeError:
            raise DataError(f"{where}: not a text CSV file (expected UTF-8 text)") from None


def data_rows(reader, header: Sequence[str], where: str) -> Iterator[tuple[int, list[str]]]:
    """The rows after the header that are not blank, with their line numbers.

    A row whose width differs from the header's is a :class:`DataError` naming ``where``
    and its line.
    """
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise DataError(f"{where}, line {reader.line_num}: {len(row)} fields where the header has "
                            f"{len(header)} ({', '.join(header)})")
        yield reader.line_num, row
