"""The exported model folder: writing it (``.keras``, SavedModel, TFLite and a model card) and reading it back.

Everything is written into a temporary sibling folder and renamed into place at the end,
so a crash leaves no half-exported model behind. :func:`read_card` reads and checks the
card of such a folder for whatever uses the model; :func:`load_predictors` reloads each
form, which the tests use to check that all of them predict the same classes.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from fer_core.errors import ConfigError, FerInputError
from fer_core.faces import CROP_MARGIN, DETECTOR
from fer_core.runtime import configure_tensorflow
from fer_core.staging import staging_folder

KERAS_FILE = "model.keras"
SAVED_MODEL_DIR = "saved_model"
TFLITE_FILE = "model.tflite"
CARD_FILE = "model_card.json"

PREPROCESSING = ("grayscale, resized to 48x48 (bilinear), float32 pixels scaled to [0, 1], "
                 "shape [N, 48, 48, 1]; the model outputs class probabilities")
PIXEL_SCALE = 1 / 255  # 8-bit grey levels to [0, 1], as fer_core.data's loaders scale them
FACE_INPUTS = ("crop", "whole")  # what a model was trained on: face crops, or whole images only resized
KERAS_IMPORT = "fer_core.layers"  # registers the custom layers (Mirror, Equalize) that model.keras may hold


def export_model(model, directory: str | os.PathLike, class_names: Sequence[str], config: Mapping[str, Any],
                 metrics: Optional[Mapping[str, Any]] = None, data_fingerprint: str = "",
                 extra: Optional[Mapping[str, Any]] = None, faces: str = "crop") -> Path:
    """Write ``model.keras``, ``saved_model/``, ``model.tflite`` and ``model_card.json``.

    ``directory`` must not exist yet or is replaced whole; its contents appear at once
    when everything is written. The card records class names, input shape,
    preprocessing, metrics, the config and a fingerprint of the training data. ``faces``
    (one of :data:`FACE_INPUTS`) says what the model was trained on, so that prediction
    does the same: ``crop``, faces (cropped by loading, or crops already); ``whole``, whole
    images only resized (``--faces none``).
    """
    if faces not in FACE_INPUTS:
        raise ConfigError(f"faces {faces!r}: expected one of {', '.join(FACE_INPUTS)}")
    tf = configure_tensorflow()

    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_folder(target)
    try:
        model.save(staging / KERAS_FILE)
        model.export(str(staging / SAVED_MODEL_DIR), format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(staging / SAVED_MODEL_DIR))
        (staging / TFLITE_FILE).write_bytes(converter.convert())
        card = {
            "name": "FER Tune facial-expression CNN",
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "class_names": list(class_names),
            "input_shape": [None, *[int(d) for d in model.input_shape[1:]]],
            "preprocessing": preprocessing_card(model.input_shape[1:], faces),
            "files": {"keras": KERAS_FILE, "saved_model": SAVED_MODEL_DIR, "tflite": TFLITE_FILE},
            "loading": loading_card(),
            "parameters": int(model.count_params()),
            "metrics": dict(metrics or {}),
            "config": dict(config),
            "data_fingerprint": data_fingerprint,
            **dict(extra or {}),
        }
        (staging / CARD_FILE).write_text(json.dumps(card, indent=2, default=_jsonable))
        _swap_into_place(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def read_card(folder: str | os.PathLike) -> dict[str, Any]:
    """The model card of an exported model's folder (a run's ``best/``), checked for its class names.

    A path that is not a folder, a folder without ``model_card.json``, a card that is not
    JSON or one without a list of at least two class names raises
    :class:`~fer_core.errors.FerInputError` naming the path and what was expected.
    """
    folder = Path(folder)
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


def preprocessing_card(input_shape: Sequence[int], faces: str = "crop") -> dict[str, Any]:
    """The card's ``preprocessing`` block: how an image becomes the model's input, as training made it.

    ``description`` is the human text; the other keys say the same for a program
    (:mod:`fer_core.predictor` reads them): the square ``size``, grayscale, the pixel
    ``scale`` to [0, 1], the EXIF rotation, and how faces are found and cropped
    (:func:`fer_core.faces.crop_face` with ``margin``, detector settings in ``detector``).
    Images already ``size`` x ``size`` are face crops and go in as they are. ``faces`` is
    ``crop`` (the model learnt from faces: an image's faces are found and cropped) or
    ``whole`` (it learnt from whole images only resized: an image goes in whole).
    """
    height, width, channels = (int(d) for d in input_shape)
    return {
        "description": PREPROCESSING,
        "size": [height, width],
        "channels": channels,
        "grayscale": channels == 1,
        "color_to_gray": "ITU-R 601-2 luma (Pillow's convert('L'))",
        "exif_transpose": True,
        "dtype": "float32",
        "scale": PIXEL_SCALE,
        "range": [0.0, 1.0],
        "layout": "NHWC",
        "faces": faces,
        "faces_means": ("the faces of an image are found and each cropped as below" if faces == "crop" else
                        "the whole image is resized to the model's size, no face is looked for (trained so)"),
        "face_crop": {"function": "fer_core.faces.crop_face", "margin": CROP_MARGIN, "square": True,
                      "interpolation": "area averaging when shrinking, bilinear when enlarging",
                      "detector": DETECTOR, "training": "the largest face of each photo"},
        "crops_as_is": f"images of exactly {height}x{width} are face crops already: no detection, no resizing",
        "inside_the_model": "per-face standardization or histogram equalization (as configured) and the "
                            "left-right mirror averaging",
    }


def loading_card() -> dict[str, str]:
    """The card's ``loading`` block: how to load each exported form, and what each one needs."""
    return {
        "keras_import": KERAS_IMPORT,
        "keras": f"import {KERAS_IMPORT}  (registers the custom layers Mirror and Equalize); "
                 f"keras.saving.load_model('{KERAS_FILE}')",
        "saved_model": f"tf.saved_model.load('{SAVED_MODEL_DIR}').signatures['serving_default'] "
                       "(TensorFlow alone, no FER Tune)",
        "tflite": f"tf.lite.Interpreter(model_path='{TFLITE_FILE}') (TensorFlow Lite alone, no FER Tune)",
        "fer_tune": "fer_core.Predictor.load('best/', backend='keras'|'saved_model'|'tflite')",
    }


def _swap_into_place(staging: Path, target: Path) -> None:
    """Put ``staging`` at ``target`` so that a complete model is there at every instant.

    A new target is one rename. An existing one is exchanged with ``staging`` in one
    ``renameat2(RENAME_EXCHANGE)`` call (Linux), after which the old model, now at the
    staging path, is removed. Where that call is missing the old model is renamed aside
    first: a crash between the two renames leaves it under ``.NAME-old-*`` beside the target.
    """
    if not target.exists():
        os.replace(staging, target)
        return
    if _exchange(staging, target):
        shutil.rmtree(staging, ignore_errors=True)
        return
    aside = staging_folder(target, "old-")
    os.replace(target, aside / target.name)
    os.replace(staging, target)
    shutil.rmtree(aside, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux ``renameat2`` with ``RENAME_EXCHANGE``); False where unsupported."""
    import ctypes
    import ctypes.util

    rename_exchange, at_fdcwd = 2, -100
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def load_predictors(directory: str | os.PathLike) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """Reload each exported form; return ``{"keras"|"saved_model"|"tflite": images -> probabilities}``."""
    tf = configure_tensorflow()
    import keras

    import fer_core.layers  # noqa: F401  registers the saved model's layers; imports Keras, so not at import time

    directory = Path(directory)
    keras_model = keras.saving.load_model(directory / KERAS_FILE)
    saved = tf.saved_model.load(str(directory / SAVED_MODEL_DIR))
    serve = saved.signatures["serving_default"]

    def saved_predict(images: np.ndarray) -> np.ndarray:
        outputs = serve(tf.constant(images, dtype=tf.float32))
        return np.asarray(next(iter(outputs.values())))

    def tflite_predict(images: np.ndarray) -> np.ndarray:
        interpreter = tf.lite.Interpreter(model_path=str(directory / TFLITE_FILE))
        inp = interpreter.get_input_details()[0]
        out = interpreter.get_output_details()[0]
        interpreter.resize_tensor_input(inp["index"], list(images.shape))
        interpreter.allocate_tensors()
        interpreter.set_tensor(inp["index"], images.astype(np.float32))
        interpreter.invoke()
        return np.asarray(interpreter.get_tensor(out["index"]))

    return {"keras": lambda images: np.asarray(keras_model.predict(images, verbose=0)),
            "saved_model": saved_predict, "tflite": tflite_predict}


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
