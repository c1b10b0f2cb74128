"""The decoded-image cache: image sets decoded once, kept as ``.npz`` files outside the repository.

Entries live under ``$FER_TUNE_CACHE`` (else ``$XDG_CACHE_HOME/fer_tune`` or
``~/.cache/fer_tune``; ``off`` turns caching off), keyed by the files' paths, sizes and
times and the loader's options, so a changed file is decoded again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from fer_core.dataset import IMAGE_SIZE
from fer_core.errors import DataError
from fer_core.faces import DETECTOR, FaceReport
from fer_core.images import DecodedImages

log = logging.getLogger(__name__)

CACHE_ENV = "FER_TUNE_CACHE"  # folder of decoded-image caches; "off" turns caching off
CACHE_MIN_FILES = 200  # smaller image sets decode in well under a second: not worth a cache file
CACHE_VERSION = 1  # bump when decoding or cropping changes, so that older cache entries are not used


def cache_dir() -> Optional[Path]:
    """``$FER_TUNE_CACHE``, else ``$XDG_CACHE_HOME/fer_tune`` or ``~/.cache/fer_tune``; None when turned off."""
    setting = os.environ.get(CACHE_ENV, "").strip()
    if setting.lower() in ("off", "0", "no", "none"):
        return None
    if setting:
        return Path(setting).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fer_tune"


def cached(place: Path, files: Sequence[Path], faces: str, build: Callable[[], DecodedImages],
           use: bool) -> DecodedImages:
    """``build()``'s result, from the cache when the same files were loaded with the same options.

    ``place`` is the folder or manifest the ``files`` were listed from. The key hashes
    every file's path, size and modification time with the options, so a changed, added
    or removed file misses; a corrupt entry is ignored and rebuilt. Sets of fewer than
    :data:`CACHE_MIN_FILES` files, and ``use=False``, bypass the cache.
    """
    directory = cache_dir() if use and len(files) >= CACHE_MIN_FILES else None
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
    parts = _read_entry(entry, key)
    if parts is not None:
        log.debug("%s: %d decoded images from the cache (%s)", place, len(parts.labels), entry)
        return parts
    parts = build()
    _write_entry(entry, key, parts)
    return parts


def _read_entry(entry: Path, key: str) -> Optional[DecodedImages]:
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
            return DecodedImages(images, labels.astype(np.int64), tuple(str(c) for c in saved["class_names"]),
                                 saved["groups"] if "groups" in saved.files else None,
                                 saved["usage"] if "usage" in saved.files else None, report)
    except Exception as exc:  # noqa: BLE001 - a damaged file fails in many ways (zip, npy, key); all mean rebuild
        log.warning("%s: ignoring unreadable cache entry (%s); decoding the images again", entry, exc)
        return None


def _write_entry(entry: Path, key: str, parts: DecodedImages) -> None:
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
