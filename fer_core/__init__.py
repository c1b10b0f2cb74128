"""FER Tune's core: data, model, augmentation, training, evaluation and export.

It knows nothing of Ray: the search in :mod:`search` wraps these functions. The names in
``__all__`` are the public surface (``from fer_core import load, make_splits, fit, Predictor``);
each is imported from its module on first use (PEP 562), so ``import fer_core`` imports
none of them, and no name imports TensorFlow until something trains, exports or predicts.
"""

from __future__ import annotations

import importlib
from typing import Any

_MODULE_OF: dict[str, str] = {  # public name -> the fer_core module that defines it
    # errors and settings
    "FerInputError": "errors", "DataError": "errors", "ConfigError": "errors", "run_cli": "errors",
    "TrainConfig": "config",
    # data
    "Dataset": "dataset", "IMAGE_SIZE": "dataset",
    "load": "data", "load_csv": "data", "load_folder": "data", "CSV_LABELS": "data",
    "load_manifest": "manifest",
    "read_gray": "images", "FACES": "images",
    "CACHE_ENV": "cache",
    "make_faces": "synthetic",
    "Splits": "splits", "SPLITS": "splits", "outer_folds": "splits", "SPLIT_SEED": "splits", "make_splits": "splits", "split": "splits",
    "resolve_split": "splits",
    "Box": "faces", "FaceReport": "faces", "detect_faces": "faces", "crop_face": "faces",
    "largest_face_crop": "faces",
    # the network and its training
    "build_cnn": "model", "build_predictor": "model", "check_fits": "model", "flops_per_face": "model",
    "build_augmenter": "augment",
    "configure_tensorflow": "runtime", "predict_proba": "runtime",
    "fit": "train", "make_dataset": "train", "EpochReport": "train", "TrainingDiverged": "train",
    "Pretrained": "transfer", "load_pretrained": "transfer", "finetuning_config": "transfer",
    # evaluation, export and use
    "evaluate_predictions": "evaluate", "evaluate_confusion": "evaluate", "evaluate_model": "evaluate", "constant_scores": "evaluate",
    "majority_accuracy": "evaluate", "SEED_BASELINE_ACCURACY": "evaluate", "paired_accuracy_difference": "evaluate",
    "export_model": "export", "read_card": "export", "load_predictors": "export",
    "Predictor": "predictor", "Face": "predictor", "Preprocessing": "predictor",
    "bundled_model_dir": "bundled", "check_bundle": "bundled", "FER2013_CLASSES": "bundled",
    "predict_video": "video", "VideoFrame": "video", "TrackedFace": "video", "FaceTracker": "video",
    "summarize": "video", "VIDEO_SUFFIXES": "video",
}

__all__ = list(_MODULE_OF)


def __getattr__(name: str) -> Any:
    """The public ``name``, imported from its module on first access and kept on the package.

    Raises :class:`AttributeError` for any other name, as a module without it would.
    """
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's own names and the public surface, which ``__getattr__`` supplies on demand."""
    return sorted(set(globals()) | set(__all__))
