"""Find faces in grayscale images and crop them the same way at training and at inference.

The detector is OpenCV's frontal-face Haar cascade, which ships inside the
``opencv-python-headless`` wheel (``cv2.data.haarcascades``), so nothing is downloaded at
run time. Against MTCNN (the ``mtcnn`` package, TensorFlow), on 54 pictures (the astronaut
and CK+ faces pasted into blank or noisy ones of 480x360 to 1600x1200) the largest box
was on the face in 53 (cascade) and 54 (MTCNN); dimmed to a quarter, 54 and 52; washed
out, 54 and 30. Each took 80-240 ms a picture on 2 cores, and the cascade needs no
TensorFlow in data loading, so it is the one used here.

Public API: :func:`detect_faces` (all faces, largest first), :func:`crop_face` (the
margin crop, 48x48 by default), :func:`largest_face_crop` (both in one call, for an
inference command line), :func:`needs_cropping` (are a set of images photos to crop, or
face crops already) and :class:`FaceReport` (what a data set's loading did, for the run's
report).
Images are 2-D ``uint8`` grayscale arrays throughout; decoding files is the loaders' job
(:func:`fer_core.images.read_gray`, which an inference command line should use too).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

CASCADE_FILE = "haarcascade_frontalface_default.xml"  # OpenCV's frontal-face cascade, inside the wheel
MIN_FACE = 24  # px: the cascade's own training window; a smaller face is not detected reliably
SCALE_FACTOR = 1.1  # OpenCV's default step between detection scales
# the settings below were measured on pasted faces and photos: experiments/README.md, "Finding faces
# and loading FER2013"
MIN_NEIGHBORS = 8  # overlapping hits a face needs: 5 (OpenCV's tutorial) found false larger faces
DETECT_MAX_SIDE = 800  # px: larger photos are shrunk for detection only; 640 missed faces 92 px wide
CROP_MARGIN = 0.0  # share added on each side: the cascade's box already frames a face as CK+48 and FER2013 do
# a face spanning this share of the image's shorter side or more is a face crop already: the box is
# 78-88% of the side on CK+48 faces, 60-70% on portraits ("Photos or face crops" in experiments/README.md)
CROP_SHARE = 0.75
# Names the detector and its settings, so that caches of crops made otherwise are not reused.
DETECTOR = (f"opencv-haar:{CASCADE_FILE}:min{MIN_FACE}:scale{SCALE_FACTOR}:neighbors{MIN_NEIGHBORS}"
            f":side{DETECT_MAX_SIDE}:margin{CROP_MARGIN}")


@dataclass(frozen=True)
class Box:
    """A face's bounding box in pixels: left ``x``, top ``y``, width ``w``, height ``h``."""

    x: int
    y: int
    w: int
    h: int

    @property
    def area(self) -> int:
        """Width times height, the order :func:`detect_faces` sorts by."""
        return self.w * self.h


@dataclass(frozen=True)
class FaceReport:
    """What loading did about faces, for the run's report.

    ``mode`` is what was applied (``"crop"`` or ``"none"``), ``asked`` what the caller
    asked for (``"auto"``, ``"crop"`` or ``"none"``), ``cropped`` how many images were
    replaced by their face crop, and ``no_face`` the files (or manifest lines) left out
    because no face was found in them.
    """

    mode: str
    asked: str
    cropped: int = 0
    no_face: tuple[str, ...] = field(default_factory=tuple)

    def describe(self) -> str:
        """One line for logs and reports, e.g. ``faces=auto: 118 cropped to their largest face, 2 without a face left out``."""
        text = f"faces={self.asked}: "
        text += "left as they are" if self.mode == "none" else f"{self.cropped} cropped to their largest face"
        if self.no_face:
            text += f", {len(self.no_face)} without a face left out"
        return text


@functools.lru_cache(maxsize=1)
def _cascade():
    import cv2

    path = os.path.join(cv2.data.haarcascades, CASCADE_FILE)
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():  # a broken OpenCV install, not a user mistake
        raise RuntimeError(f"OpenCV could not load its face cascade {path}")
    return cascade


def _check_gray(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image, got shape {image.shape}")
    return np.ascontiguousarray(image, dtype=np.uint8)


def detect_faces(gray: np.ndarray, min_face: int = MIN_FACE) -> list[Box]:
    """All frontal faces in a grayscale ``uint8`` image, largest first.

    Photos larger than :data:`DETECT_MAX_SIDE` are shrunk for the search and the boxes
    scaled back, so boxes are always in ``gray``'s own pixels. ``min_face`` is the
    smallest face side looked for, in those pixels. An image without a face gives ``[]``.

    Example::

        from skimage.data import astronaut
        from skimage.color import rgb2gray
        boxes = detect_faces((rgb2gray(astronaut()) * 255).astype("uint8"))
        # one Box around Eileen Collins' face, near x=177, y=67, 93x93
    """
    import cv2

    gray = _check_gray(gray)
    scale = min(1.0, DETECT_MAX_SIDE / max(gray.shape))
    small = gray if scale == 1.0 else cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    side = max(1, int(round(min_face * scale)))
    # No histogram equalisation: the cascade normalises each window's contrast itself, and
    # equalising found fewer faces in dim and washed-out pictures (44 of 48 against 48).
    found = _cascade().detectMultiScale(small, scaleFactor=SCALE_FACTOR,
                                        minNeighbors=MIN_NEIGHBORS, minSize=(side, side))
    boxes = [Box(*(int(round(v / scale)) for v in row)) for row in np.reshape(found, (-1, 4))]
    return sorted(boxes, key=lambda b: (-b.area, b.x, b.y))


def crop_face(gray: np.ndarray, box: Box, size: int = 48, margin: float = CROP_MARGIN) -> np.ndarray:
    """The face in ``box`` with ``margin`` added on each side, as a ``size`` x ``size`` ``uint8`` image.

    The region is the square around the box's centre whose side is the box's longer side
    times ``1 + 2 * margin`` (by default the box itself, see :data:`CROP_MARGIN`); where it
    runs off the image the edge pixels are repeated, so a face at the border keeps its place
    and scale in the crop. Training data and an
    inference command line must both crop through this function.
    """
    import cv2

    gray = _check_gray(gray)
    side = max(1, int(round(max(box.w, box.h) * (1 + 2 * margin))))
    left = int(round(box.x + box.w / 2 - side / 2))
    top = int(round(box.y + box.h / 2 - side / 2))
    height, width = gray.shape
    pad = max(0, -left, -top, left + side - width, top + side - height)
    if pad:
        gray = np.pad(gray, pad, mode="edge")
        left, top = left + pad, top + pad
    region = gray[top:top + side, left:left + side]
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR  # area averaging when shrinking
    return cv2.resize(region, (size, size), interpolation=interpolation)


def largest_face_crop(gray: np.ndarray, size: int = 48, min_face: int = MIN_FACE) -> Optional[np.ndarray]:
    """The :func:`crop_face` of the largest face in ``gray``, or ``None`` when there is no face."""
    boxes = detect_faces(gray, min_face=min_face)
    return crop_face(gray, boxes[0], size=size) if boxes else None


def needs_cropping(images: Sequence[np.ndarray]) -> bool:
    """Whether a set of grayscale images are photos to crop rather than face crops already.

    Each image votes: a *crop* when it is exactly 48x48 (the size of CK+48 and FER2013,
    not looked at) or when its largest face spans :data:`CROP_SHARE` of its shorter side,
    a *photo* when its largest face is smaller than that; an image without a detectable face does not vote, as there is nothing to
    crop in it. Cropping is needed when photos outnumber crops, so a few crops the
    detector misses or mis-sizes do not turn a folder of crops into photos, and noise or
    drawings are left as they are. Callers pass a sample of their images.
    """
    if not len(images):
        raise ValueError("needs_cropping needs at least one image")
    photos = crops = 0
    for image in images:
        if np.shape(image) == (48, 48):
            crops += 1
            continue
        image = _check_gray(image)
        boxes = detect_faces(image, min_face=min(MIN_FACE, min(image.shape)))
        if boxes:
            if boxes[0].w >= CROP_SHARE * min(image.shape):
                crops += 1
            else:
                photos += 1
    return photos > crops
