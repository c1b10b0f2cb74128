"""Using an exported model: faces found and named in photos, the command line, its outputs and errors.

One small real model is trained on synthetic faces and exported once for the module; the
photos are scikit-image's astronaut, CK+ faces pasted into larger pictures, and blanks.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fer_core.config import TrainConfig
from fer_core.errors import run_cli

# where the astronaut's face is in scikit-image's 512x512 photo (measured: the cascade's
# box is x 177-272, y 66-161; by eye the face spans about x 180-270, y 70-160)
ASTRONAUT_FACE_CENTRE = (224, 113)
ASTRONAUT_FACE_SIDE = (80, 110)
TINY = dict(conv_blocks=2, base_filters=8, dense_units=32, padding="same", batch_size=32, epochs=2,
            normalize="standardize")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real model: a small CNN trained 2 epochs on synthetic faces, exported with mirror averaging."""
    from fer_core.data import load
    from fer_core.export import export_model
    from fer_core.model import build_cnn, build_predictor
    from fer_core.train import fit

    data = load("synthetic:300")
    config = TrainConfig(**TINY)
    trained, _ = fit(config, data, threads=2)
    member = build_cnn(config, name="member0", n_classes=data.n_classes)
    member.set_weights(trained.get_weights())
    return export_model(build_predictor([member], mirror=True), tmp_path_factory.mktemp("run") / "best",
                        data.class_names, config.to_dict(), metrics={"accuracy": 0.5})


@pytest.fixture(scope="module")
def predictor(model_dir: Path):
    from fer_core.predict import Predictor

    return Predictor.load(model_dir)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the astronaut (PNG) and a blank picture (JPEG)."""
    from PIL import Image
    from skimage.data import astronaut

    folder = tmp_path_factory.mktemp("photos")
    Image.fromarray(astronaut()).save(folder / "astronaut.png")
    Image.fromarray(np.full((240, 320, 3), 128, np.uint8)).save(folder / "blank.jpg")
    return folder


def _cli(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, list[str], list[str]]:
    """Run the command line in this process: (exit status, stdout lines, stderr lines)."""
    from fer_core.predict import main

    status = run_cli(main, argv, prog="predict")
    out, err = capsys.readouterr()
    return status, out.splitlines(), err.splitlines()


# --------------------------------------------------------------------------- the engine

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
def test_faces_smaller_than_the_model_input_are_looked_for_only_when_asked(predictor, model_dir: Path,
                                                                          tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture) -> None:
    """By default the smallest face looked for is the model's input side (48 px); --min-face 24 finds a 36 px one."""
    from PIL import Image
    from skimage.data import astronaut

    small = np.asarray(Image.fromarray(astronaut()).resize((200, 200), Image.Resampling.LANCZOS))  # face ~37 px
    assert predictor.default_min_face == 48 and predictor.predict(small) == []
    faces = predictor.predict(small, min_face=24)
    assert len(faces) == 1 and 24 <= faces[0].box.w < 48
    Image.fromarray(small).save(tmp_path / "small.png")
    for extra, found in (([], None), (["--min-face", "24"], 0)):
        status, out, err = _cli(["--model", str(model_dir), str(tmp_path / "small.png"), *extra], capsys)
        assert status == 0 and json.loads(out[0])["face"] == found, err


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
    from fer_core.predict import Predictor

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


# --------------------------------------------------------------------------- the command line

@pytest.mark.slow
def test_cli_prints_a_json_line_per_face_and_one_for_a_photo_without_a_face(model_dir: Path, photos: Path,
                                                                            capsys: pytest.CaptureFixture) -> None:
    status, out, err = _cli(["--model", str(model_dir), str(photos / "astronaut.png"), str(photos / "blank.jpg")],
                            capsys)
    assert status == 0, err
    lines = [json.loads(line) for line in out]
    assert [(line["file"], line["face"]) for line in lines] == [(str(photos / "astronaut.png"), 0),
                                                              (str(photos / "blank.jpg"), None)]
    face, blank = lines
    assert len(face["box"]) == 4 and face["label"] == max(face["probabilities"], key=face["probabilities"].get)
    assert face["model_folder"] == str(model_dir) and face["model"]
    assert blank["label"] is None and blank["note"] == "no face found"


@pytest.mark.slow
def test_cli_output_writes_annotated_photos_and_a_csv(model_dir: Path, photos: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    from PIL import Image

    output = tmp_path / "annotated"
    status, out, err = _cli(["--model", str(model_dir), str(photos), "--output", str(output)], capsys)
    assert status == 0, err
    folder = photos.name
    assert sorted(str(p.relative_to(output)) for p in output.rglob("*") if p.is_file()) == \
           sorted([f"{folder}/astronaut.png", f"{folder}/blank.jpg", "predictions.csv"])
    assert [p.name for p in tmp_path.iterdir()] == ["annotated"]  # no staging folder left behind
    annotated = np.asarray(Image.open(output / folder / "astronaut.png").convert("RGB")).astype(int)
    original = np.asarray(Image.open(photos / "astronaut.png").convert("RGB")).astype(int)
    assert annotated.shape == original.shape
    face = json.loads(out[0])
    x, y, w, h = face["box"]
    changed = np.abs(annotated - original).sum(axis=2) > 30
    assert changed[y:y + h, x].mean() > 0.9 and changed[y + h // 2, x + 5:x + w - 5].mean() < 0.1  # a box, not a fill
    assert changed.mean() < 0.05  # the rest of the photo is left alone
    with open(output / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["file"], r["label"] or None) for r in rows] == [(json.loads(line)["file"], json.loads(line)["label"])
                                                              for line in out]
    assert [int(rows[0][k]) for k in "xywh"] == face["box"] and rows[1]["note"] == "no face found"
    # a second run into the same folder replaces its files
    status, _, err = _cli(["--model", str(model_dir), str(photos), "--output", str(output)], capsys)
    assert status == 0 and len(list(output.rglob("*.*"))) == 3


@pytest.mark.slow
def test_cli_folder_with_unreadable_images_warns_and_goes_on(model_dir: Path, photos: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "mixed"
    shutil.copytree(photos, folder)
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    (folder / "sub").mkdir()
    (folder / "sub" / "empty.png").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image, not looked at")
    status, out, err = _cli(["--model", str(model_dir), str(folder), "--output", str(tmp_path / "out")], capsys)
    assert status == 0, err
    files = sorted(json.loads(line)["file"] for line in out)
    assert files == [str(folder / "astronaut.png"), str(folder / "blank.jpg")]
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 2 and any("broken.jpg" in m for m in warned) and any("empty.png" in m for m in warned)
    assert (tmp_path / "out" / "predictions.csv").is_file()


def _bad_model(model_dir: Path, tmp_path: Path, edit) -> Path:
    """A copy of the model folder whose card ``edit`` changes."""
    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    card = json.loads((folder / "model_card.json").read_text())
    edit(card)
    (folder / "model_card.json").write_text(json.dumps(card))
    return folder


def _other_classes(card: dict) -> None:
    card["class_names"] = ["happy", "sad", "neutral"]


def _other_size(card: dict) -> None:
    card["input_shape"] = [None, 64, 64, 1]
    card["preprocessing"]["size"] = [64, 64]


@pytest.mark.slow
@pytest.mark.parametrize("case", ["unreadable photo", "photo after a good one is unreadable", "empty folder",
                                  "missing photo", "folder without a card", "card of other classes",
                                  "card of another input size", "no model file for the backend",
                                  "no --model flag"])
def test_cli_bad_input_is_one_line_exit_2_and_nothing_written(case: str, model_dir: Path, photos: Path,
                                                              tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG but not really")
    (tmp_path / "empty").mkdir()
    model, inputs, backend, where = str(model_dir), [str(photos / "astronaut.png")], "keras", None
    if case == "unreadable photo":
        inputs, where = [str(bad)], str(bad)
    elif case == "photo after a good one is unreadable":
        inputs, where = [str(photos / "astronaut.png"), str(bad)], str(bad)
    elif case == "empty folder":
        inputs, where = [str(tmp_path / "empty")], str(tmp_path / "empty")
    elif case == "missing photo":
        inputs, where = [str(tmp_path / "nope.jpg")], str(tmp_path / "nope.jpg")
    elif case == "folder without a card":
        model = where = str(photos)
    elif case == "card of other classes":
        model = str(_bad_model(model_dir, tmp_path, _other_classes))
        where = model
    elif case == "card of another input size":
        model = str(_bad_model(model_dir, tmp_path, _other_size))
        where = model
    elif case == "no model file for the backend":
        model = str(_bad_model(model_dir, tmp_path, lambda card: None))
        (Path(model) / "model.tflite").unlink()
        backend, where = "tflite", str(Path(model) / "model.tflite")
    else:
        model, where = None, "--model"
    output = tmp_path / "out"
    before = sorted(p.name for p in tmp_path.iterdir())
    flags = ["--model", model] if model else []
    status, out, err = _cli([*flags, *inputs, "--output", str(output), "--backend", backend], capsys)
    assert status == 2
    assert out == [] and len(err) == 1 and err[0].startswith("predict: error: ") and where in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no output folder, no staging folder


@pytest.mark.slow
def test_python_m_fer_core_predict_runs_as_a_command(model_dir: Path, photos: Path, tmp_path: Path) -> None:
    from conftest import ROOT

    result = subprocess.run([sys.executable, "-m", "fer_core.predict", "--model", str(model_dir),
                             str(photos / "blank.jpg"), "--backend", "tflite"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)["note"] == "no face found"
    result = subprocess.run([sys.executable, "-m", "fer_core.predict", "--model", str(tmp_path), str(photos)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].startswith("predict: error: ")
    assert "Traceback" not in result.stderr


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
