"""Name the expressions of the faces in images with an exported model: the :class:`Predictor` library.

:class:`Predictor` loads a run's ``best/`` folder (``model.keras``, ``saved_model/`` or
``model.tflite``, and ``model_card.json``), or by default the FER2013 model bundled with FER Tune
(:mod:`fer_core.bundled`), and turns an image into a list of
:class:`Face`: each face found by :func:`fer_core.faces.detect_faces`, cropped by
:func:`fer_core.faces.crop_face` with the card's margin, scaled as the card says, and
classified. Images of the model's own size (48x48) are face crops already and are
classified as they are. The command line over it is :mod:`fer_core.predict`.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np

from fer_core.images import read_gray, resize_face
from fer_core.bundled import BUNDLED_DIR, FORMS, bundled_model_dir
from fer_core.runtime import configure_tensorflow, predict_proba
from fer_core.errors import ConfigError, FerInputError
from fer_core.export import CARD_FILE, FACE_INPUTS, KERAS_FILE, PIXEL_SCALE, SAVED_MODEL_DIR, TFLITE_FILE, read_card
from fer_core.faces import CROP_MARGIN, MIN_FACE, Box, crop_face, detect_faces
from fer_core.video import VideoFrame, predict_video

log = logging.getLogger(__name__)

BACKENDS = ("keras", "saved_model", "tflite")
FILES = {"keras": KERAS_FILE, "saved_model": SAVED_MODEL_DIR, "tflite": TFLITE_FILE}


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the model's input: what the model card's ``preprocessing`` block says.

    ``size`` is the side of the square face crop, ``scale`` turns 8-bit grey levels into the
    model's range, ``margin`` is :func:`fer_core.faces.crop_face`'s margin, and ``whole`` says
    that the model learnt from whole images (``--faces none``), so an image goes in whole, not
    its faces. Cards written before a key existed get training's defaults then (48, 1/255, the
    faces module's margin, face crops).
    """

    size: int = 48
    scale: float = PIXEL_SCALE
    margin: float = CROP_MARGIN
    whole: bool = False

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
        faces = block.get("faces", "crop")
        if faces not in FACE_INPUTS:
            raise ConfigError(f"{where}: preprocessing faces {faces!r}; expected one of {', '.join(FACE_INPUTS)}")
        return cls(size=int(shape[1]), scale=float(block.get("scale", PIXEL_SCALE)), margin=float(margin),
                   whole=faces == "whole")


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
        from fer_core import Predictor

        predictor = Predictor.load()        # the bundled FER2013 model; or "runs/NAME/best", backend="tflite"
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
    def load(cls, path: Optional[str | os.PathLike] = None, backend: str = "keras",
             threads: Optional[int] = None) -> "Predictor":
        """Load the ``backend`` form (``keras``, ``saved_model`` or ``tflite``) of the model in ``path``.

        ``path`` is a run's ``best/`` folder (or its ``model_card.json``); without it, the FER2013
        model bundled with FER Tune (:func:`fer_core.bundled.bundled_model_dir`, which ships the
        ``keras`` and ``tflite`` forms; a :class:`~fer_core.errors.ConfigError` if it is absent). The model is checked
        against its card: the same input size and one output per class name. A missing or
        unreadable card, a missing model file or a model unlike its card raises
        :class:`~fer_core.errors.FerInputError` naming the file; ``threads`` pins
        TensorFlow's thread pools (all cores by default).
        """
        if backend not in BACKENDS:
            raise ConfigError(f"backend {backend!r}: expected one of {', '.join(BACKENDS)}")
        folder = bundled_model_dir() if path is None else Path(path)
        if folder.name == CARD_FILE:
            folder = folder.parent
        card = read_card(folder)
        preprocessing = Preprocessing.from_card(card, str(folder / CARD_FILE))
        model_path = folder / FILES[backend]
        if not model_path.exists():
            holds = "the bundled model ships " + ", ".join(FORMS.values()) if folder == BUNDLED_DIR else \
                "the best/ folder of a run holds " + ", ".join(FILES.values())
            raise FerInputError(f"{model_path}: not found; expected the {backend} form of an exported model ({holds})")
        run, input_side, outputs = _LOADERS[backend](model_path, threads)
        names = card["class_names"]
        if input_side not in (None, preprocessing.size) or outputs != len(names):
            raise ConfigError(f"{model_path}: the model takes {input_side}x{input_side} faces and gives {outputs} "
                              f"classes, but {folder / CARD_FILE} says {preprocessing.size}x{preprocessing.size} and "
                              f"{len(names)} ({', '.join(names)}); expected the card written with this model")
        log.info("loaded %s (%s, %d classes: %s)", model_path, backend, len(names), ", ".join(names))
        if preprocessing.whole:
            log.info("%s was trained on whole images (--faces none): each image is classified whole, "
                     "no face is looked for", folder)
        return cls(run, card, folder, backend, preprocessing)

    def predict(self, image: np.ndarray | str | os.PathLike, min_face: Optional[int] = None) -> list[Face]:
        """The faces of ``image``, largest first, each with its expression.

        ``image`` is a path (decoded by :func:`fer_core.images.read_gray`, EXIF upright), or a
        2-D grayscale or ``H x W x 3|4`` RGB(A) array, ``uint8`` or floats in [0, 1]. An image of
        exactly the model's size is one face crop, classified as it is; in any other
        image faces of at least ``min_face`` pixels are looked for (by default the model's
        input side, see :meth:`default_min_face`), and an image without one gives ``[]``. A
        model trained on whole images (its card's ``faces`` is ``whole``) gets the whole image,
        resized, as one face that was not ``detected``.
        """
        gray = read_gray(image) if isinstance(image, (str, os.PathLike)) else to_gray(image)
        size = self.preprocessing.size
        if gray.shape == (size, size) or self.preprocessing.whole:
            height, width = gray.shape
            boxes, crops, detected = [Box(0, 0, width, height)], resize_face(gray, size)[None], False
        else:
            boxes = detect_faces(gray, min_face=self.default_min_face if min_face is None else min_face)
            crops = np.stack([crop_face(gray, box, size=size, margin=self.preprocessing.margin) for box in boxes]) \
                if boxes else np.zeros((0, size, size), np.uint8)
            detected = True
        probabilities = self.classify(crops)
        return [self._face(box, p, detected) for box, p in zip(boxes, probabilities)]

    def predict_video(self, path: str | os.PathLike, every: int = 1, fps: Optional[float] = None,
                      min_face: Optional[int] = None) -> Iterator[VideoFrame]:
        """Each analysed frame of a video with its faces, each face keeping its track id while it stays
        in view: every ``every``-th frame, or at most ``fps`` frames a second (:func:`fer_core.video.predict_video`).

        Example::

            for frame in predictor.predict_video("session.mp4", fps=5):
                for face in frame.faces:
                    print(frame.time_s, face.face, face.label)
        """
        return predict_video(self, path, every=every, fps=fps, min_face=min_face)

    @property
    def default_min_face(self) -> int:
        """The smallest face looked for unless told otherwise: the model's input side (48 px).

        A smaller face would be enlarged to it, with less detail than the faces the model
        learnt from, and looking for faces down to the detector's own limit
        (:data:`fer_core.faces.MIN_FACE`, 24 px) about doubles detection's time
        (experiments/README.md, "Using the model"). Pass ``min_face=24`` to find them.
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


def to_gray(image: np.ndarray) -> np.ndarray:
    """A 2-D ``uint8`` grayscale copy of a grayscale or RGB(A) array (``uint8``, or floats in [0, 1]).

    Colour goes to grey through Pillow's ``convert("L")``, the luma that
    :func:`fer_core.images.read_gray` uses, so an array and its saved file give the same pixels.
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
    configure_tensorflow(threads)
    import keras

    import fer_core.layers  # noqa: F401  registers model.keras's layers; imports Keras, so not at import time

    try:
        model = keras.saving.load_model(path)
    except (OSError, ValueError, TypeError) as exc:
        raise FerInputError(f"{path}: cannot load the Keras model ({type(exc).__name__}); "
                            "expected a model.keras written by fer_core.export") from None
    return (lambda images: predict_proba(model, images)), model.input_shape[1], int(model.output_shape[-1])


def _load_saved_model(path: Path, threads: Optional[int]):
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
