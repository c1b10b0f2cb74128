"""The FER2013 model that ships inside the package: where it is, and the check of its card against its files.

``fer_core/models/fer2013/`` holds one file per form that FER Tune uses (``model.keras`` for
prediction and ``--init builtin``, ``model.tflite`` for ``--backend tflite``) and their
``model_card.json``: the card :func:`fer_core.export.export_model` writes, plus what the bundle
adds (``bundle``: the command that rebuilt it, the code's commit, the data's fingerprints;
``privatetest``: its figures on FER2013's PrivateTest; ``files`` and ``file_bytes``: exactly the
forms present). ``experiments/build_bundled_model.py`` writes it; :func:`check_bundle` is what
it and the tests check it with. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from fer_core.errors import ConfigError, FerInputError
from fer_core.export import CARD_FILE, KERAS_FILE, TFLITE_FILE, read_card

BUNDLED_DIR = Path(__file__).resolve().parent / "models" / "fer2013"
BUILTIN = "builtin"  # the name --init gives the bundled model
FORMS = {"keras": KERAS_FILE, "tflite": TFLITE_FILE}  # one file per form; no SavedModel folder in the package
MAX_BYTES = 10 * 2**20  # the package's share for the model: every form together, the card apart
# FER2013's classes as its image layout's folders name them, in the order fer_core.data loads them (sorted)
FER2013_CLASSES = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
# what the card's privatetest block must hold: the protocol's figures of the one test
TEST_FIGURES = ("n", "accuracy", "accuracy_ci95", "macro_f1", "balanced_accuracy", "majority_class",
                "majority_accuracy", "per_class_recall")
BUILD_KEYS = ("command", "commit", "data_fingerprint", "test_fingerprint")
NOT_BUILT = "bundled model not built yet"


def is_built(folder: str | os.PathLike = BUNDLED_DIR) -> bool:
    """Whether ``folder`` (the bundled model's, by default) holds a model file and its card."""
    folder = Path(folder)
    return (folder / CARD_FILE).is_file() and any((folder / name).is_file() for name in FORMS.values())


def bundled_model_dir() -> Path:
    """The folder of the FER2013 model shipped with FER Tune, for :meth:`fer_core.Predictor.load` and
    ``--init builtin``.

    Raises :class:`~fer_core.errors.ConfigError` when its files are absent (a checkout before the
    model was built, or an install that left the package data out), saying how to get them.
    """
    if not is_built(BUNDLED_DIR):
        raise ConfigError(f"{BUNDLED_DIR}: {NOT_BUILT} (no {CARD_FILE} beside {KERAS_FILE}); build it with "
                          "python -m experiments.build_bundled_model --data FER2013_FOLDER, or pass a run's best/ "
                          "folder instead")
    return BUNDLED_DIR


def file_digest(path: Path) -> str:
    """The SHA-256 of the file at ``path``, hex: what the card records of each form."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_bundle(folder: str | os.PathLike = BUNDLED_DIR) -> dict[str, Any]:
    """Check a bundled model's card against its files; return the card.

    The card must name FER2013's seven classes in :data:`FER2013_CLASSES`' order and a 48x48x1
    input; its ``files`` must be exactly the forms present (each of :data:`FORMS`, no SavedModel
    folder), each of the size and SHA-256 the card records, all together at most
    :data:`MAX_BYTES`; ``privatetest`` must hold :data:`TEST_FIGURES` and ``bundle``
    :data:`BUILD_KEYS`. The first disagreement raises :class:`~fer_core.errors.ConfigError` naming
    the card and what was expected. Loading each form is :meth:`fer_core.Predictor.load`'s check.
    """
    folder = Path(folder)
    where = folder / CARD_FILE
    try:
        card = read_card(folder)
    except FerInputError as exc:
        raise ConfigError(str(exc)) from None
    if tuple(card["class_names"]) != FER2013_CLASSES:
        raise ConfigError(f"{where}: class_names {card['class_names']}; expected FER2013's "
                          f"{', '.join(FER2013_CLASSES)}")
    if card.get("input_shape") != [None, 48, 48, 1]:
        raise ConfigError(f"{where}: input_shape {card.get('input_shape')!r}; expected [null, 48, 48, 1]")
    files = card.get("files")
    if files != FORMS:
        raise ConfigError(f"{where}: files {files!r}; expected {FORMS} (one file per form)")
    present = sorted(p.name for p in folder.iterdir() if not p.name.startswith(".") and p.name != CARD_FILE
                     and p.name != "README.md")
    if present != sorted(FORMS.values()):
        raise ConfigError(f"{folder}: holds {', '.join(present) or 'nothing'}; expected exactly "
                          f"{', '.join(sorted(FORMS.values()))} beside {CARD_FILE}")
    sizes, digests = card.get("file_bytes") or {}, card.get("sha256") or {}
    for form, name in FORMS.items():
        size = (folder / name).stat().st_size
        if sizes.get(name) != size or digests.get(name) != file_digest(folder / name):
            raise ConfigError(f"{folder / name}: {size} bytes, not the {sizes.get(name)} bytes (or not the SHA-256) "
                              f"{where} records; expected the files the card was written with")
    total = sum(sizes.values())
    if total > MAX_BYTES:
        raise ConfigError(f"{folder}: the forms take {total / 2**20:.1f} MiB; expected at most "
                          f"{MAX_BYTES / 2**20:.0f} MiB (fewer ensemble members make a smaller model)")
    test, build = card.get("privatetest") or {}, card.get("bundle") or {}
    missing = [f"privatetest.{k}" for k in TEST_FIGURES if k not in test] + \
              [f"bundle.{k}" for k in BUILD_KEYS if not build.get(k)]
    if missing:
        raise ConfigError(f"{where}: no {', '.join(missing)}; expected the card "
                          "experiments/build_bundled_model.py writes")
    return card
