"""Shared fixtures and helpers: small generated data sets, the CK+48 location, quiet TensorFlow, one
exported model, the search command run as a user runs it, TensorBoard's events read back."""

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
TINY_MODEL = dict(conv_blocks=2, base_filters=8, dense_units=32, padding="same", batch_size=32, epochs=2,
                  normalize="standardize")  # model_dir's network: trains in seconds


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


def write_fer_tree(root: Path, counts: dict[str, dict[str, int]], prefixes: bool = True, seed: int = 0) -> Path:
    """FER2013's image layout: usage -> {class: n}; Training goes to train/, the two tests to test/."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for usage, classes in counts.items():
        for name, count in classes.items():
            folder = root / ("train" if usage == "Training" else "test") / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                stem = f"{usage}_{seed}{i:05d}" if prefixes else f"{usage.lower()}{i:05d}"
                Image.fromarray(rng.integers(0, 256, (48, 48), dtype=np.uint8)).save(folder / f"{stem}.png")
    return root


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real model: a small CNN trained 2 epochs on synthetic faces, exported with mirror averaging."""
    from fer_core.config import TrainConfig
    from fer_core.data import load
    from fer_core.export import export_model
    from fer_core.model import build_cnn, build_predictor
    from fer_core.train import fit

    data = load("synthetic:300")
    config = TrainConfig(**TINY_MODEL)
    trained, _ = fit(config, data, threads=2)
    member = build_cnn(config, name="member0", n_classes=data.n_classes)
    member.set_weights(trained.get_weights())
    return export_model(build_predictor([member], mirror=True), tmp_path_factory.mktemp("run") / "best",
                        data.class_names, config.to_dict(), metrics={"accuracy": 0.5})


@pytest.fixture(scope="session")
def predictor(model_dir: Path):
    from fer_core.predictor import Predictor

    return Predictor.load(model_dir)


@pytest.fixture(scope="session")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the astronaut (PNG) and a blank picture (JPEG)."""
    from PIL import Image
    from skimage.data import astronaut

    folder = tmp_path_factory.mktemp("photos")
    Image.fromarray(astronaut()).save(folder / "astronaut.png")
    Image.fromarray(np.full((240, 320, 3), 128, np.uint8)).save(folder / "blank.jpg")
    return folder
