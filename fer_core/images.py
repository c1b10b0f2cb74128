"""Decode image files and make each a 48x48 face: what every image loader of :mod:`fer_core.data` shares.

An image is decoded to grayscale, upright by its EXIF orientation, then either resized
to 48x48 as it is or cropped to its largest face (:mod:`fer_core.faces`), as the
loader's ``faces`` option says; ``"auto"`` decides from a sample of the images.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from fer_core.dataset import IMAGE_SIZE, Dataset
from fer_core.errors import DataError
from fer_core.faces import FaceReport, largest_face_crop, needs_cropping

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".pgm", ".webp")
FACES = ("auto", "crop", "none")  # what loading does about faces: decide, crop the largest face, leave as is
FACE_SAMPLE = 20  # images "auto" looks at to decide: enough to judge, few enough to decide within a second
PROGRESS_MIN_IMAGES = 2000  # decoding this many images or more shows a progress bar


@dataclass(frozen=True)
class DecodedImages:
    """A loaded data set before it becomes a :class:`Dataset`: 8-bit faces and their labels (what the cache holds)."""

    images: np.ndarray  # uint8 [N, 48, 48]
    labels: np.ndarray
    class_names: tuple[str, ...]
    groups: Optional[np.ndarray]
    usage: Optional[np.ndarray]
    faces: FaceReport


def check_faces(faces: str) -> None:
    """Raise :class:`DataError` unless ``faces`` is one of :data:`FACES`."""
    if faces not in FACES:
        raise DataError(f"faces {faces!r}: expected one of {', '.join(FACES)}")


def read_gray(path: str | os.PathLike, where: Optional[str] = None) -> np.ndarray:
    """Decode an image file into a 2-D ``uint8`` grayscale array at its own size, as loading does.

    The image is turned upright by its EXIF orientation first, so an inference command line
    that decodes through here and crops with :func:`fer_core.faces.largest_face_crop` sees
    what training saw. A file that cannot be decoded raises :class:`DataError` naming
    ``where`` (the path by default).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(Path(path)) as image:
            # Phone photos store their rotation in EXIF; without this a portrait face lies on its side.
            return np.asarray(ImageOps.exif_transpose(image).convert("L"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{str(path) if where is None else where}: cannot decode image ({type(exc).__name__}); "
                        "expected a readable PNG/JPEG/BMP file") from None


def to_faces(count: int, decode: Callable[[int], np.ndarray], where: Callable[[int], str],
             faces: str, place: str) -> tuple[np.ndarray, np.ndarray, FaceReport]:
    """Decode ``count`` images and make each 48x48: resized as is, or cropped to its largest face.

    ``decode(i)`` gives image ``i`` as grayscale and ``where(i)`` names it in messages.
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
            out[i] = resize_face(gray)
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


def finish(parts: DecodedImages, source: str) -> Dataset:
    """The :class:`Dataset` of ``parts`` (pixels scaled to [0, 1]), checked for two classes and logged.

    ``source`` names the data set in the log line and in the :class:`DataError` of a
    data set with fewer than two classes.
    """
    dataset = Dataset(images=_to_float(parts.images), labels=parts.labels, class_names=parts.class_names,
                      groups=parts.groups, usage=parts.usage, source=source, faces=parts.faces)
    _check_classes(dataset, source)
    why = ""
    if parts.faces.asked == "auto":
        why = (" (most sampled images are photos with a small face)" if parts.faces.mode == "crop" else
               " (most sampled images are 48x48, face crops or show no face)")
    log.info("%s: %d images; %s%s", source, len(dataset), parts.faces.describe(), why)
    return dataset


def _face_mode(count: int, decode: Callable[[int], np.ndarray], faces: str) -> str:
    if faces != "auto":
        return faces
    sample = np.unique(np.linspace(0, count - 1, min(FACE_SAMPLE, count)).round().astype(int))
    # Logged by finish once the data set is known good, so that an error stays one line.
    return "crop" if needs_cropping([decode(int(i)) for i in sample]) else "none"


def resize_face(gray: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """A grayscale image resized whole to ``size`` x ``size`` (bilinear), as ``faces="none"`` loads it."""
    if gray.shape == (size, size):
        return gray
    from PIL import Image

    return np.asarray(Image.fromarray(gray).resize((size, size), Image.Resampling.BILINEAR))


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
