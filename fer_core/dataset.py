"""The one small container every stage passes data in: images, labels and what travels with them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np

from fer_core.faces import FaceReport

IMAGE_SIZE = 48  # CK+48 and FER2013 are 48x48; every model here takes 48x48x1
HASH_CHUNK = 4096  # images hashed at a time: 38 MB of float32, not a copy of the whole set (FER2013: 330 MB)


@dataclass(frozen=True, eq=False)
class Dataset:
    """Images, integer labels and what travels with them.

    ``images`` is ``float32 [N, 48, 48, 1]`` in [0, 1]; ``labels`` is ``int64 [N]`` in
    ``0..len(class_names)-1``; ``groups`` holds a subject id per image when the source
    has them, ``usage`` the CSV's Usage value (or the FER2013 file name or folder it came
    from). ``faces`` says what loading image files did about faces (cropped how many,
    which files had none); it describes the load, so subsets and joins keep it as is.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    groups: Optional[np.ndarray] = None
    usage: Optional[np.ndarray] = None
    source: str = ""
    faces: Optional[FaceReport] = None

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

    def fingerprint(self, *more: "Dataset") -> str:
        """A short content hash of images, labels and class names, for model cards; with ``more``,
        of this data set followed by them, as their :meth:`concat` hashes, without joining them."""
        parts = (self, *more)
        digest = hashlib.sha256()
        digest.update("\n".join(self.class_names).encode())
        for part in parts:
            digest.update(np.ascontiguousarray(part.labels, dtype=np.int64).tobytes())
        for part in parts:
            for start in range(0, len(part), HASH_CHUNK):
                pixels = (part.images[start:start + HASH_CHUNK] * 255).round().astype(np.uint8)
                digest.update(np.ascontiguousarray(pixels).tobytes())
        return digest.hexdigest()[:16]

    def describe(self) -> str:
        """One line: size, classes with counts, subjects."""
        counts = ", ".join(f"{n} {c}" for n, c in zip(self.class_names, self.class_counts()))
        subjects = f", {len(np.unique(self.groups))} subjects" if self.groups is not None else ""
        return f"{len(self)} images, {self.n_classes} classes ({counts}){subjects}"
