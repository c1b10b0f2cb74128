"""Shared fixtures and helpers: small generated data sets, the CK+48 location, quiet TensorFlow, the
search command run as a user runs it, TensorBoard's events read back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]
CK48_ENV = "FER_TUNE_CK48"  # CI points this at ../shared/data/ck48


def ck48_path() -> Path | None:
    """Where CK+48 is: $FER_TUNE_CK48, else ../shared/data/ck48 beside the project; None if absent."""
    candidates = [os.environ.get(CK48_ENV), ROOT.parent / "shared" / "data" / "ck48"]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def ck48() -> Path:
    path = ck48_path()
    if path is None:
        pytest.skip(f"CK+48 not found: set {CK48_ENV} to the ck48 folder (see README, 'Getting CK+')")
    return path


def write_csv(path: Path, rows: list[tuple], header: str = "emotion,pixels,Usage") -> Path:
    """Write a CK+/FER2013 style CSV from (label, pixel-array-or-string[, usage]) rows."""
    lines = [header]
    for row in rows:
        label, pixels, *rest = row
        text = pixels if isinstance(pixels, str) else " ".join(str(int(v)) for v in np.ravel(pixels))
        lines.append(",".join([str(label), text, *rest]))
    path.write_text("\n".join(lines) + "\n")
    return path


def random_pixels(rng: np.random.Generator, side: int = 48) -> np.ndarray:
    return rng.integers(0, 256, size=(side, side))


@pytest.fixture
def ck_csv(tmp_path: Path) -> Path:
    """A small ckextended.csv look-alike: labels 0-7 with a gap, 48x48, Usage column."""
    rng = np.random.default_rng(0)
    rows = []
    for label in (0, 1, 3, 5, 7):  # not contiguous, as in a CSV that lacks some emotions
        for i in range(6):
            usage = "Training" if i < 4 else ("PublicTest" if i == 4 else "PrivateTest")
            rows.append((label, random_pixels(rng), usage))
    return write_csv(tmp_path / "ckextended.csv", rows)


def write_image_folder(root: Path, classes: dict[str, int], subjects: int = 4, seed: int = 0,
                       size: int = 48, ck_names: bool = True) -> Path:
    """Class folders of PNGs, optionally named like CK+ (S010_004_00000017.png)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for name, count in classes.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            stem = f"S{100 + i % subjects:03d}_{i:03d}_{i:08d}" if ck_names else f"img{i}"
            Image.fromarray(rng.integers(0, 256, size=(size, size), dtype=np.uint8)).save(folder / f"{stem}.png")
    return root


def search_run(*args: str, timeout: int = 900, **kwargs) -> subprocess.CompletedProcess:
    """``python -m search.run ARGS`` from the project folder, its output captured."""
    return subprocess.run([sys.executable, "-m", "search.run", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def tensorboard_events(path: Path):
    """The TensorBoard events of one run folder, loaded whole."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(path), size_guidance={"tensors": 0, "images": 0})
    accumulator.Reload()
    return accumulator
