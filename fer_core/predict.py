"""Find the faces in photos and name their expressions with an exported model.

:class:`Predictor` loads a run's ``best/`` folder (``model.keras``, ``saved_model/`` or
``model.tflite``, and ``model_card.json``) and turns an image into a list of
:class:`Face`: each face found by :func:`fer_core.faces.detect_faces`, cropped by
:func:`fer_core.faces.crop_face` with the card's margin, scaled as the card says, and
classified. Images of the model's own size (48x48) are face crops already and are
classified as they are. The command line does the same for photos and folders::

    python -m fer_core.predict --model runs/NAME/best photo.jpg folder/ [--output annotated/]

It prints one JSON line per face (a photo without a face gets one line saying so); with
``--output`` it writes each photo annotated with its boxes and labels and a
``predictions.csv``, all at once at the end. Bad input (a file that is not an image, an
empty folder, a model folder without its card, a model unlike its card) is one line
``predict: error: ...`` and exit status 2; unreadable files inside a folder are warned
about and skipped.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import shutil
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np

from fer_core.data import IMAGE_SUFFIXES, read_gray
from fer_core.errors import ConfigError, DataError, FerInputError, run_cli
from fer_core.export import CARD_FILE, KERAS_FILE, PIXEL_SCALE, SAVED_MODEL_DIR, TFLITE_FILE
from fer_core.faces import CROP_MARGIN, MIN_FACE, Box, crop_face, detect_faces

log = logging.getLogger(__name__)

BACKENDS = ("keras", "saved_model", "tflite")
FILES = {"keras": KERAS_FILE, "saved_model": SAVED_MODEL_DIR, "tflite": TFLITE_FILE}
CSV_FILE = "predictions.csv"
ANNOTATED_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")  # kept for annotated photos; others become .png
PROGRESS_MIN_FILES = 2  # a folder of more photos than this shows a progress bar (on a terminal)
NO_FACE = "no face found"
# Annotation: box and text sizes follow the photo's size, so they read alike on a thumbnail and a poster.
BOX_COLOR = (255, 64, 64)
TEXT_COLOR = (255, 255, 255)
LINE_SHARE = 1 / 160  # box line width: this share of the photo's longer side, at least 2 px
FONT_SHARE = 1 / 28  # label height: this share of the photo's longer side, at least 12 px


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the model's input: what the model card's ``preprocessing`` block says.

    ``size`` is the side of the square face crop, ``scale`` turns 8-bit grey levels into the
    model's range, ``margin`` is :func:`fer_core.faces.crop_face`'s margin. Cards written
    before the block existed get training's defaults (48, 1/255, the faces module's margin).
    """

    size: int = 48
    scale: float = PIXEL_SCALE
    margin: float = CROP_MARGIN

    @classmethod
    def from_card(cls, card: dict[str, Any], where: str) -> "Preprocessing":
        """Read the card's block, checking that it describes a square grayscale input the card's shape agrees with."""
        shape = card.get("input_shape")
        if not (isinstance(shape, list) and len(shape) == 4 and shape[1] == shape[2] and shape[3] == 1):
            raise ConfigError(f"{where}: input_shape is {shape!r}; expected [null, S, S, 1] (square grayscale faces)")
        block = card.get("preprocessing")
        if not isinstance(block, dict):  # a card from before the block: training's settings then
            log.info("%s: no machine-readable preprocessing block; using training's defaults", where)
            return cls(size=int(shape[1]))
        size = block.get("size", [shape[1], shape[2]])
        if list(size) != [shape[1], shape[2]] or not block.get("grayscale", True):
            raise ConfigError(f"{where}: preprocessing size {size!r} (grayscale={block.get('grayscale')}) does not "
                              f"match input_shape {shape!r}; expected the same square grayscale size")
        margin = block.get("face_crop", {}).get("margin", CROP_MARGIN)
        return cls(size=int(shape[1]), scale=float(block.get("scale", PIXEL_SCALE)), margin=float(margin))


@dataclass(frozen=True)
class Face:
    """One face in an image and what the model calls it.

    ``box`` is where the face is, in the image's own pixels (the whole image when it was
    a face crop already, ``detected`` False); ``label`` the most probable class and
    ``confidence`` its probability; ``probabilities`` every class's, in the card's order.
    """

    box: Box
    label: str
    confidence: float
    probabilities: dict[str, float]
    detected: bool = True

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``box`` as ``[x, y, w, h]``, probabilities rounded to 4 decimals."""
        return {"box": [self.box.x, self.box.y, self.box.w, self.box.h], "label": self.label,
                "confidence": round(self.confidence, 4), "detected": self.detected,
                "probabilities": {name: round(p, 4) for name, p in self.probabilities.items()}}


class Predictor:
    """An exported model with the preprocessing its card describes: images in, :class:`Face` out.

    Load it with :meth:`load` from a run's ``best/`` folder; :meth:`predict` finds every
    face of an image (a path, or a grayscale or RGB array), crops each as training did and
    classifies them together; :meth:`classify` takes face crops directly.

    Example::

        from skimage.data import astronaut
        from fer_core.predict import Predictor

        predictor = Predictor.load("runs/NAME/best")            # or backend="tflite"
        for face in predictor.predict(astronaut()):
            print(face.box, face.label, f"{face.confidence:.0%}")
        # Box(x=177, y=66, w=95, h=95) happy 97%   (a FER2013 model trained 8 epochs)
    """

    def __init__(self, run: Callable[[np.ndarray], np.ndarray], card: dict[str, Any], folder: Path,
                 backend: str, preprocessing: Preprocessing) -> None:
        self._run = run
        self.card = card
        self.folder = folder
        self.backend = backend
        self.preprocessing = preprocessing
        self.class_names: tuple[str, ...] = tuple(card["class_names"])

    @classmethod
    def load(cls, path: str | os.PathLike, backend: str = "keras", threads: Optional[int] = None) -> "Predictor":
        """Load the ``backend`` form (``keras``, ``saved_model`` or ``tflite``) of the model in ``path``.

        ``path`` is a run's ``best/`` folder (or its ``model_card.json``). The model is checked
        against its card: the same input size and one output per class name. A missing or
        unreadable card, a missing model file or a model unlike its card raises
        :class:`~fer_core.errors.FerInputError` naming the file; ``threads`` pins
        TensorFlow's thread pools (all cores by default).
        """
        if backend not in BACKENDS:
            raise ConfigError(f"backend {backend!r}: expected one of {', '.join(BACKENDS)}")
        folder = Path(path)
        if folder.name == CARD_FILE:
            folder = folder.parent
        card = read_card(folder)
        preprocessing = Preprocessing.from_card(card, str(folder / CARD_FILE))
        model_path = folder / FILES[backend]
        if not model_path.exists():
            raise FerInputError(f"{model_path}: not found; expected the {backend} form of an exported model "
                                f"(the best/ folder of a run holds {', '.join(FILES.values())})")
        run, input_side, outputs = _LOADERS[backend](model_path, threads)
        names = card["class_names"]
        if input_side not in (None, preprocessing.size) or outputs != len(names):
            raise ConfigError(f"{model_path}: the model takes {input_side}x{input_side} faces and gives {outputs} "
                              f"classes, but {folder / CARD_FILE} says {preprocessing.size}x{preprocessing.size} and "
                              f"{len(names)} ({', '.join(names)}); expected the card written with this model")
        log.info("loaded %s (%s, %d classes: %s)", model_path, backend, len(names), ", ".join(names))
        return cls(run, card, folder, backend, preprocessing)

    def predict(self, image: np.ndarray | str | os.PathLike, min_face: Optional[int] = None) -> list[Face]:
        """The faces of ``image``, largest first, each with its expression.

        ``image`` is a path (decoded by :func:`fer_core.data.read_gray`, EXIF upright), or a
        2-D grayscale or ``H x W x 3|4`` RGB(A) array, ``uint8`` or floats in [0, 1]. An image of
        exactly the model's size is one face crop, classified as it is; in any other
        image faces of at least ``min_face`` pixels are looked for (by default the model's
        input side, see :meth:`default_min_face`), and an image without one gives ``[]``.
        """
        gray = read_gray(image) if isinstance(image, (str, os.PathLike)) else to_gray(image)
        size = self.preprocessing.size
        if gray.shape == (size, size):
            boxes, crops, detected = [Box(0, 0, size, size)], gray[None], False
        else:
            boxes = detect_faces(gray, min_face=self.default_min_face if min_face is None else min_face)
            crops = np.stack([crop_face(gray, box, size=size, margin=self.preprocessing.margin) for box in boxes]) \
                if boxes else np.zeros((0, size, size), np.uint8)
            detected = True
        probabilities = self.classify(crops)
        return [self._face(box, p, detected) for box, p in zip(boxes, probabilities)]

    @property
    def default_min_face(self) -> int:
        """The smallest face looked for unless told otherwise: the model's input side (48 px).

        A smaller face would be enlarged to it, with less detail than the faces the model
        learnt from, and looking for faces down to the detector's own limit
        (:data:`fer_core.faces.MIN_FACE`, 24 px) more than doubles detection's time (640x480:
        93 against 42 ms a photo, ``experiments/bench_predict.py``). Pass ``min_face=24`` to find them.
        """
        return max(MIN_FACE, self.preprocessing.size)

    def classify(self, crops: np.ndarray) -> np.ndarray:
        """Class probabilities ``[N, classes]`` for ``uint8`` face crops ``[N, S, S]`` of the model's size."""
        crops = np.asarray(crops)
        if len(crops) == 0:
            return np.zeros((0, len(self.class_names)), np.float32)
        images = (crops.astype(np.float32) * np.float32(self.preprocessing.scale))[..., np.newaxis]
        return np.asarray(self._run(images), dtype=np.float32)

    def _face(self, box: Box, probabilities: np.ndarray, detected: bool) -> Face:
        best = int(np.argmax(probabilities))
        return Face(box=box, label=self.class_names[best], confidence=float(probabilities[best]),
                    probabilities={n: float(p) for n, p in zip(self.class_names, probabilities)}, detected=detected)


def read_card(folder: Path) -> dict[str, Any]:
    """The model card of a run's ``best/`` folder, checked for class names and an input shape."""
    path = folder / CARD_FILE
    if not folder.is_dir():
        raise FerInputError(f"{folder}: not a folder; expected the best/ folder of a run (runs/NAME/best)")
    if not path.is_file():
        raise FerInputError(f"{folder}: no {CARD_FILE}; expected the best/ folder of a run (runs/NAME/best), "
                            "which holds the model and its card")
    try:
        card = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FerInputError(f"{path}: cannot read the model card ({type(exc).__name__}); expected JSON") from None
    names = card.get("class_names") if isinstance(card, dict) else None
    if not (isinstance(names, list) and len(names) >= 2 and all(isinstance(n, str) for n in names)):
        raise FerInputError(f"{path}: class_names is {names!r}; expected a list of at least two class names")
    return card


def to_gray(image: np.ndarray) -> np.ndarray:
    """A 2-D ``uint8`` grayscale copy of a grayscale or RGB(A) array (``uint8``, or floats in [0, 1]).

    Colour goes to grey through Pillow's ``convert("L")``, the luma that
    :func:`fer_core.data.read_gray` uses, so an array and its saved file give the same pixels.
    """
    from PIL import Image

    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))) or array.size == 0:
        raise FerInputError(f"image array of shape {array.shape}: expected H x W grayscale or H x W x 3|4 colour")
    if array.dtype != np.uint8:
        if array.dtype.kind == "f" and array.size and (array.min() < 0 or array.max() > 1):
            raise FerInputError(f"float image array with values in [{array.min():g}, {array.max():g}]: "
                                "expected [0, 1] (or uint8 0-255)")
        scale = 255.0 if array.dtype.kind == "f" else 1.0
        array = np.clip(np.round(array.astype(np.float64) * scale), 0, 255).astype(np.uint8)
    if array.ndim == 2:
        return np.ascontiguousarray(array)
    return np.asarray(Image.fromarray(array[:, :, :3]).convert("L"), dtype=np.uint8)


# --------------------------------------------------------------------------- backends
# Each loader returns (images -> probabilities, the input side or None, the number of outputs).

def _load_keras(path: Path, threads: Optional[int]):
    from fer_core.runtime import configure_tensorflow, predict_proba

    configure_tensorflow(threads)
    import keras

    import fer_core.layers  # noqa: F401  registers the custom layers model.keras may hold

    try:
        model = keras.saving.load_model(path)
    except (OSError, ValueError, TypeError) as exc:
        raise FerInputError(f"{path}: cannot load the Keras model ({type(exc).__name__}); "
                            "expected a model.keras written by fer_core.export") from None
    return (lambda images: predict_proba(model, images)), model.input_shape[1], int(model.output_shape[-1])


def _load_saved_model(path: Path, threads: Optional[int]):
    from fer_core.runtime import configure_tensorflow

    tf = configure_tensorflow(threads)
    try:
        serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    except (OSError, ValueError, KeyError) as exc:
        raise FerInputError(f"{path}: cannot load the SavedModel ({type(exc).__name__}); "
                            "expected a saved_model/ written by fer_core.export") from None
    spec = next(iter(serve.structured_input_signature[1].values()))
    outputs = next(iter(serve.structured_outputs.values())).shape[-1]

    def run(images: np.ndarray) -> np.ndarray:
        return np.asarray(next(iter(serve(tf.constant(images)).values())))

    return run, spec.shape[1], int(outputs)


def _load_tflite(path: Path, threads: Optional[int]):
    from fer_core.runtime import configure_tensorflow

    tf = configure_tensorflow(threads)
    try:
        with warnings.catch_warnings():  # TF 2.21 names LiteRT as the successor; this interpreter still runs the file
            warnings.filterwarnings("ignore", message=r"\s*Warning: tf.lite.Interpreter is deprecated")
            interpreter = tf.lite.Interpreter(model_path=str(path), num_threads=threads)
    except (OSError, ValueError, RuntimeError) as exc:
        raise FerInputError(f"{path}: cannot load the TFLite model ({type(exc).__name__}); "
                            "expected a model.tflite written by fer_core.export") from None
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    batch = [0]  # the batch size the tensors are allocated for: resizing costs more than a small batch

    def run(images: np.ndarray) -> np.ndarray:
        if batch[0] != len(images):
            interpreter.resize_tensor_input(inp["index"], list(images.shape))
            interpreter.allocate_tensors()
            batch[0] = len(images)
        interpreter.set_tensor(inp["index"], images)
        interpreter.invoke()
        return interpreter.get_tensor(out["index"]).copy()

    return run, int(inp["shape"][1]), int(out["shape"][-1])


_LOADERS = {"keras": _load_keras, "saved_model": _load_saved_model, "tflite": _load_tflite}


# --------------------------------------------------------------------------- command line

@dataclass(frozen=True)
class Photo:
    """One image file to look at: its path, and its name under ``--output`` (relative, unique)."""

    path: Path
    out_name: str
    in_folder: bool  # found by walking a folder: an unreadable file is a warning, not an error


def find_photos(inputs: Sequence[str | os.PathLike], skip: Optional[Path] = None) -> list[Photo]:
    """The image files of ``inputs`` (files as given; folders walked for image files, sorted).

    Names under ``--output`` keep a folder's layout below the folder's own name, so two
    ``face.jpg`` in different folders do not overwrite each other. A missing path or a
    folder without image files raises :class:`DataError`; ``skip`` (the output folder) is
    not walked.
    """
    photos: list[Photo] = []
    taken: set[str] = set()

    def add(path: Path, name: str, in_folder: bool) -> None:
        if Path(name).suffix.lower() not in ANNOTATED_SUFFIXES:
            name = str(Path(name).with_suffix(".png"))
        stem, suffix, n = Path(name).with_suffix(""), Path(name).suffix, 1
        while name.lower() in taken:
            n += 1
            name = f"{stem}-{n}{suffix}"
        taken.add(name.lower())
        photos.append(Photo(path, name, in_folder))

    for item in map(Path, inputs):
        if item.is_dir():
            found = [p for p in sorted(item.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                     and not any(part.startswith(".") for part in p.relative_to(item).parts)
                     and not (skip is not None and p.resolve().is_relative_to(skip.resolve()))]
            if not found:
                raise DataError(f"{item}: no image files in this folder or below; expected files ending in "
                                f"{', '.join(IMAGE_SUFFIXES)}")
            for path in found:
                add(path, str(Path(item.resolve().name or "root") / path.relative_to(item)), True)
        elif item.is_file():
            add(item, item.name, False)
        else:
            raise DataError(f"{item}: no such file or folder; expected a photo or a folder of photos")
    return photos


def main(argv: Optional[list[str]] = None) -> int:
    """``python -m fer_core.predict``: parse, load the model, look at each photo, print and write the results."""
    args = _parser().parse_args(argv)
    if args.min_face is not None and args.min_face < 1:
        raise FerInputError(f"--min-face {args.min_face}: expected a face side in pixels, at least 1")
    output = Path(args.output) if args.output else None
    if output is not None and output.exists() and not output.is_dir():
        raise FerInputError(f"--output {output}: exists and is not a folder; expected a folder (made if missing)")
    photos = find_photos(args.inputs, skip=output)
    for photo in photos:  # files named directly must all be images: fail before printing anything
        if not photo.in_folder:
            read_gray(photo.path)
    predictor = Predictor.load(args.model, backend=args.backend)
    staging = None
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        # beside the output, so that the final rename stays on one file system
        staging = Path(tempfile.mkdtemp(prefix=f".{output.name}-", dir=output.parent))
        staging.chmod(0o777 & ~_umask())  # mkdtemp's 0700 would carry over to the output folder
    try:
        rows, counts = [], {"photos": 0, "faces": 0, "no_face": 0, "unreadable": 0}
        for photo, faces in _predict_all(predictor, photos, args.min_face, counts):
            for line in _json_lines(photo, faces, predictor):
                print(json.dumps(line), flush=True)
                rows.append(line)
            if staging is not None:
                annotate(photo.path, faces, staging / photo.out_name)
        if counts["photos"] == 0:
            raise DataError(f"{', '.join(map(str, args.inputs))}: none of the {len(photos)} image files could be "
                            "read; expected readable PNG/JPEG/BMP files")
        if staging is not None:
            write_csv(rows, predictor.class_names, staging / CSV_FILE)
            _move_into(staging, output)
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    log.info("%d photo(s): %d face(s), %d without a face, %d unreadable%s", counts["photos"], counts["faces"],
             counts["no_face"], counts["unreadable"], f"; wrote {output}" if output else "")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse whose mistakes are one line, ``predict: error: ...`` through ``run_cli``, like every other bad input."""

    def error(self, message: str):  # type: ignore[override]
        raise FerInputError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m fer_core.predict", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a run's best/ folder (model files and model_card.json)")
    parser.add_argument("inputs", nargs="+", metavar="PHOTO_OR_FOLDER", help="image files, or folders to walk")
    parser.add_argument("--output", help="folder for the annotated photos and predictions.csv (made or updated)")
    parser.add_argument("--min-face", type=int, metavar="PX",
                        help=f"smallest face side looked for, in px (default: the model's input side, 48; "
                             f"{MIN_FACE} finds smaller faces, at twice the time)")
    parser.add_argument("--backend", choices=BACKENDS, default="keras", help="which exported form runs (default keras)")
    return parser


def _predict_all(predictor: Predictor, photos: Sequence[Photo], min_face: Optional[int],
                 counts: dict[str, int]) -> Iterator[tuple[Photo, list[Face]]]:
    """Each readable photo with its faces; unreadable files found in folders are warned about and skipped."""
    from tqdm.auto import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    # on a terminal only (disable=None); warnings go through the bar so that they do not break it
    bar = tqdm(photos, desc="photos", unit="photo", disable=None if len(photos) > PROGRESS_MIN_FILES else True)
    with logging_redirect_tqdm():
        for photo in bar:
            try:
                gray = read_gray(photo.path)
            except DataError as exc:
                if not photo.in_folder:
                    raise
                counts["unreadable"] += 1
                log.warning("skipped: %s", exc)
                continue
            faces = predictor.predict(gray, min_face=min_face)
            counts["photos"] += 1
            counts["faces"] += len(faces)
            counts["no_face"] += not faces
            yield photo, faces


def _json_lines(photo: Photo, faces: list[Face], predictor: Predictor) -> list[dict[str, Any]]:
    model = {"model": predictor.card.get("name", "model"), "model_folder": str(predictor.folder)}
    if not faces:
        return [{"file": str(photo.path), "face": None, "label": None, "note": NO_FACE, **model}]
    return [{"file": str(photo.path), "face": i, **face.to_dict(), **model} for i, face in enumerate(faces)]


def annotate(path: Path, faces: Sequence[Face], target: Path) -> None:
    """Write the photo at ``path`` (colour, EXIF upright) to ``target`` with each face's box, label and confidence."""
    from PIL import Image, ImageDraw, ImageFont, ImageOps

    with Image.open(path) as original:
        image = ImageOps.exif_transpose(original).convert("RGB")
    draw = ImageDraw.Draw(image)
    side = max(image.size)
    width = max(2, round(side * LINE_SHARE))
    try:
        font = ImageFont.load_default(size=max(12, round(side * FONT_SHARE)))
    except TypeError:  # Pillow 10.0 has only its small bitmap font
        font = ImageFont.load_default()
    for face in faces:
        b = face.box
        draw.rectangle([b.x, b.y, b.x + b.w - 1, b.y + b.h - 1], outline=BOX_COLOR, width=width)
        text = f"{face.label} {face.confidence:.0%}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        pad = width
        # above the box where there is room, else inside its top edge
        y = b.y - (bottom - top) - 2 * pad if b.y >= (bottom - top) + 2 * pad else b.y
        draw.rectangle([b.x, y, b.x + right - left + 2 * pad, y + bottom - top + 2 * pad], fill=BOX_COLOR)
        draw.text((b.x + pad - left, y + pad - top), text, fill=TEXT_COLOR, font=font)
    target.parent.mkdir(parents=True, exist_ok=True)
    image.save(target)


def write_csv(rows: Sequence[dict[str, Any]], class_names: Sequence[str], target: Path) -> None:
    """``predictions.csv``: one row per face (file, face, box, label, confidence, each class's probability)."""
    with open(target, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "face", "x", "y", "w", "h", "label", "confidence", *class_names, "note"])
        for row in rows:
            if row["face"] is None:
                writer.writerow([row["file"], "", "", "", "", "", "", "", *[""] * len(class_names), row["note"]])
                continue
            writer.writerow([row["file"], row["face"], *row["box"], row["label"], row["confidence"],
                             *(row["probabilities"][n] for n in class_names), ""])


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _move_into(staging: Path, output: Path) -> None:
    """Move the finished files into ``output``: one rename when it is new, else file by file (each atomic)."""
    if not output.exists():
        os.replace(staging, output)
        return
    for path in sorted(p for p in staging.rglob("*") if p.is_file()):
        target = output / path.relative_to(staging)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    sys.exit(run_cli(main, prog="predict"))
