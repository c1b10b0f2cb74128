"""The Predictor library: faces found and named in images, each backend alike, the exported forms.

One small real model is trained on synthetic faces and exported once for the session
(``model_dir`` in conftest.py); the photos are scikit-image's astronaut, CK+ faces pasted
into larger pictures, and blanks.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fer_core.errors import ConfigError

# where the astronaut's face is in scikit-image's 512x512 photo (measured: the cascade's
# box is x 177-272, y 66-161; by eye the face spans about x 180-270, y 70-160)
ASTRONAUT_FACE_CENTRE = (224, 113)
ASTRONAUT_FACE_SIDE = (80, 110)


@pytest.fixture(scope="module")
def small_astronaut() -> np.ndarray:
    """The astronaut at 200x200: her face is about 37 px, below the model's 48."""
    from PIL import Image
    from skimage.data import astronaut

    return np.asarray(Image.fromarray(astronaut()).resize((200, 200), Image.Resampling.LANCZOS))


@pytest.mark.parametrize("case, where, expected", [
    ("missing folder", "best", "not a folder; expected the best/ folder of a run"),
    ("no card", "best", "no model_card.json; expected the best/ folder of a run"),
    ("not JSON", "best/model_card.json", "cannot read the model card (JSONDecodeError); expected JSON"),
    ("one class", "best/model_card.json", "class_names is ['a']; expected a list of at least two class names"),
])
def test_a_bad_model_folder_is_an_input_error_naming_the_path(tmp_path: Path, case: str, where: str,
                                                              expected: str) -> None:
    from fer_core.errors import FerInputError
    from fer_core.predictor import Predictor

    folder = tmp_path / "best"
    if case != "missing folder":
        folder.mkdir()
    if case in ("not JSON", "one class"):
        (folder / "model_card.json").write_text("{" if case == "not JSON" else '{"class_names": ["a"]}')
    with pytest.raises(FerInputError, match=r"^" + re.escape(f"{tmp_path / where}: {expected}")):
        Predictor.load(folder)


@pytest.mark.slow
def test_astronaut_has_one_face_at_her_face(predictor, photos: Path) -> None:
    from skimage.data import astronaut

    faces = predictor.predict(astronaut())
    assert len(faces) == 1
    face = faces[0]
    cx, cy = face.box.x + face.box.w / 2, face.box.y + face.box.h / 2
    assert abs(cx - ASTRONAUT_FACE_CENTRE[0]) < 15 and abs(cy - ASTRONAUT_FACE_CENTRE[1]) < 15, face.box
    assert ASTRONAUT_FACE_SIDE[0] <= face.box.w <= ASTRONAUT_FACE_SIDE[1]
    assert face.detected and face.label in predictor.class_names
    assert set(face.probabilities) == set(predictor.class_names)
    assert face.confidence == max(face.probabilities.values()) and sum(face.probabilities.values()) == pytest.approx(1)
    # the same photo from its file (decoded as training decodes) and as floats: the same answer
    for same in (predictor.predict(photos / "astronaut.png"), predictor.predict(astronaut() / 255.0)):
        assert [(f.box, f.label) for f in same] == [(face.box, face.label)]
        np.testing.assert_allclose(list(same[0].probabilities.values()), list(face.probabilities.values()), atol=1e-6)


@pytest.mark.slow
def test_a_48x48_image_is_a_face_crop_classified_as_it_is(predictor) -> None:
    from fer_core.data import load

    crop = (load("synthetic:20").images[3, :, :, 0] * 255).round().astype(np.uint8)
    faces = predictor.predict(crop)
    assert len(faces) == 1 and not faces[0].detected and (faces[0].box.w, faces[0].box.h) == (48, 48)
    np.testing.assert_allclose(list(faces[0].probabilities.values()), predictor.classify(crop[None])[0], atol=1e-6)


@pytest.mark.slow
@pytest.mark.ck48
def test_ck_faces_pasted_into_larger_photos_are_found_and_named_as_their_crops(predictor, ck48: Path) -> None:
    """Each CK+48 face, enlarged and pasted at a known place, is found there, and the model
    says of it what it says of the original 48x48 crop: the same probabilities within a few
    hundredths (the detector's box and the resizing differ slightly from the data set's crop),
    so the same label wherever the model's choice is not a near tie."""
    from PIL import Image

    from fer_core.faces import crop_face

    files = [sorted((ck48 / c).glob("*.png"))[5] for c in sorted(p.name for p in ck48.iterdir() if p.is_dir())]
    rng = np.random.default_rng(0)
    for i, path in enumerate(files):
        original = np.asarray(Image.open(path).convert("L"))
        side = 96 + 16 * i
        photo = np.clip(rng.normal(110, 8, (480, 640)), 0, 255).astype(np.uint8)
        x, y = 60 + 60 * i, 40 + 30 * i
        photo[y:y + side, x:x + side] = np.asarray(Image.fromarray(original).resize((side, side),
                                                                                     Image.Resampling.BILINEAR))
        faces = predictor.predict(photo)
        assert len(faces) == 1, (path.name, faces)
        box = faces[0].box
        assert abs(box.x - x) <= 6 and abs(box.y - y) <= 6 and abs(box.w - side) <= 12, (path.name, box, x, y, side)
        # the face is classified as its crop (crop_face with the card's margin) would be ...
        np.testing.assert_allclose(list(faces[0].probabilities.values()),
                                   predictor.classify(crop_face(photo, box)[None])[0], atol=1e-6)
        # ... which the model takes for the data set's own 48x48 face
        direct = predictor.predict(original)[0]
        found = np.array(list(faces[0].probabilities.values()))
        expected = np.array(list(direct.probabilities.values()))
        np.testing.assert_allclose(found, expected, atol=0.05, err_msg=path.name)
        top_two = np.sort(expected)[-2:]
        if top_two[1] - top_two[0] > 0.05:
            assert faces[0].label == direct.label, path.name


@pytest.mark.slow
def test_faces_smaller_than_the_model_input_are_looked_for_only_when_asked(predictor, small_astronaut) -> None:
    """By default the smallest face looked for is the model's input side (48 px); min_face=24 finds a 36 px one."""
    assert predictor.default_min_face == 48 and predictor.predict(small_astronaut) == []
    faces = predictor.predict(small_astronaut, min_face=24)
    assert len(faces) == 1 and 24 <= faces[0].box.w < 48


@pytest.mark.slow
def test_a_blank_image_has_no_face(predictor) -> None:
    assert predictor.predict(np.full((300, 400), 200, np.uint8)) == []


@pytest.mark.slow
def test_keras_saved_model_and_tflite_give_the_same_labels(model_dir: Path, predictor) -> None:
    """On synthetic faces, real CK+ faces where there are, and the astronaut's face."""
    from conftest import ck48_path
    from PIL import Image
    from skimage.data import astronaut

    from fer_core.data import load
    from fer_core.predictor import Predictor

    faces = [(load("synthetic:60").images[:, :, :, 0] * 255).round().astype(np.uint8)]
    if ck48_path() is not None:
        faces.append(np.stack([np.asarray(Image.open(p).convert("L"))
                               for p in sorted(ck48_path().rglob("*.png"))[::25]]))
    crops = np.concatenate(faces)
    expected = predictor.classify(crops)
    for backend in ("tflite", "saved_model"):
        other = Predictor.load(model_dir, backend=backend)
        got = other.classify(crops)
        np.testing.assert_array_equal(got.argmax(axis=1), expected.argmax(axis=1), err_msg=backend)
        np.testing.assert_allclose(got, expected, atol=1e-4, err_msg=backend)
        assert [(f.box, f.label) for f in other.predict(astronaut())] == \
               [(f.box, f.label) for f in predictor.predict(astronaut())]


# --------------------------------------------------------------------------- loading the exported forms

def _run_python(code: str, cwd: Path) -> str:
    """Run ``code`` in a new interpreter outside the repository; its last line of output."""
    result = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_keras_file_loads_in_a_fresh_interpreter_with_the_import_its_card_names(model_dir: Path, predictor,
                                                                                 tmp_path: Path) -> None:
    """``model.keras`` holds FER Tune's custom layers (Mirror; Equalize where configured): plain
    Keras loads it after the one import the card names, as the README says."""
    card = json.loads((model_dir / "model_card.json").read_text())
    assert card["loading"]["keras_import"] == "fer_core.layers"
    faces = np.random.default_rng(0).integers(0, 256, (4, 48, 48), dtype=np.uint8)
    np.save(tmp_path / "faces.npy", faces.astype(np.float32)[..., None] / 255)
    code = ("import importlib, json, sys, numpy as np, keras\n"
            f"card = json.load(open({str(model_dir / 'model_card.json')!r}))\n"
            "importlib.import_module(card['loading']['keras_import'])\n"
            f"model = keras.models.load_model({str(model_dir / 'model.keras')!r})\n"
            f"print(json.dumps(model.predict(np.load({str(tmp_path / 'faces.npy')!r}), verbose=0).tolist()))\n")
    got = np.array(json.loads(_run_python(code, tmp_path)))
    np.testing.assert_allclose(got, predictor.classify(faces), atol=1e-5)


@pytest.mark.slow
def test_saved_model_and_tflite_load_without_fer_tune(model_dir: Path, predictor, tmp_path: Path) -> None:
    faces = np.random.default_rng(1).integers(0, 256, (4, 48, 48), dtype=np.uint8)
    np.save(tmp_path / "faces.npy", faces.astype(np.float32)[..., None] / 255)
    code = ("import json, sys, numpy as np, tensorflow as tf\n"
            f"faces = np.load({str(tmp_path / 'faces.npy')!r})\n"
            f"serve = tf.saved_model.load({str(model_dir / 'saved_model')!r}).signatures['serving_default']\n"
            "saved = next(iter(serve(tf.constant(faces)).values())).numpy()\n"
            f"interpreter = tf.lite.Interpreter(model_path={str(model_dir / 'model.tflite')!r})\n"
            "inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]\n"
            "interpreter.resize_tensor_input(inp['index'], list(faces.shape)); interpreter.allocate_tensors()\n"
            "interpreter.set_tensor(inp['index'], faces); interpreter.invoke()\n"
            "lite = interpreter.get_tensor(out['index'])\n"
            "assert not [m for m in sys.modules if m.split('.')[0] == 'fer_core'], 'fer_core was imported'\n"
            "print(json.dumps([saved.tolist(), lite.tolist()]))\n")
    saved, lite = (np.array(a) for a in json.loads(_run_python(code, tmp_path)))
    expected = predictor.classify(faces)
    np.testing.assert_allclose(saved, expected, atol=1e-4)
    np.testing.assert_allclose(lite, expected, atol=1e-4)


@pytest.mark.slow
def test_a_model_trained_on_whole_images_gets_the_whole_image(model_dir: Path, photos: Path, tmp_path: Path) -> None:
    """The card says what the model was trained on: a model of whole images (``--faces none``)
    classifies an image whole, resized, where a model of face crops classifies her face."""
    import shutil

    from fer_core.images import read_gray, resize_face
    from fer_core.predictor import Predictor

    whole_dir = tmp_path / "best"
    shutil.copytree(model_dir, whole_dir)
    card = json.loads((whole_dir / "model_card.json").read_text())
    card["preprocessing"]["faces"] = "whole"
    (whole_dir / "model_card.json").write_text(json.dumps(card))
    whole, cropped = Predictor.load(whole_dir), Predictor.load(model_dir)
    gray = read_gray(photos / "astronaut.png")
    (face,) = whole.predict(gray)
    assert not face.detected and (face.box.x, face.box.y, face.box.w, face.box.h) == (0, 0, 512, 512)
    expected = whole.classify(resize_face(gray, 48)[None])[0]
    assert np.allclose([face.probabilities[n] for n in whole.class_names], expected, atol=1e-6)
    (her,) = cropped.predict(gray)
    assert her.detected and her.box.w < 200
    card["preprocessing"]["faces"] = "sideways"
    (whole_dir / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(ConfigError, match="preprocessing faces 'sideways'"):
        Predictor.load(whole_dir)


def test_the_card_names_what_the_model_was_trained_on() -> None:
    from fer_core.export import preprocessing_card

    assert preprocessing_card((48, 48, 1))["faces"] == "crop"
    assert preprocessing_card((48, 48, 1), "whole")["faces"] == "whole"
