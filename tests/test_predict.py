"""The command line over an exported model: its JSON lines, annotated photos and CSV, and its errors.

One small real model is trained on synthetic faces and exported once for the session
(``model_dir`` in conftest.py); the photos are scikit-image's astronaut and a blank.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fer_core.errors import run_cli


def _cli(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, list[str], list[str]]:
    """Run the command line in this process: (exit status, stdout lines, stderr lines)."""
    from fer_core.predict import main

    status = run_cli(main, argv, prog="predict")
    out, err = capsys.readouterr()
    return status, out.splitlines(), err.splitlines()


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
                                  "card of another input size", "no model file for the backend"])
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
    output = tmp_path / "out"
    before = sorted(p.name for p in tmp_path.iterdir())
    status, out, err = _cli(["--model", model, *inputs, "--output", str(output), "--backend", backend], capsys)
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


@pytest.mark.slow
def test_min_face_finds_faces_smaller_than_the_model_input(model_dir: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    """A 36 px face: no face by default (the model's input side, 48 px), found with --min-face 24."""
    from PIL import Image
    from skimage.data import astronaut

    Image.fromarray(astronaut()).resize((200, 200), Image.Resampling.LANCZOS).save(tmp_path / "small.png")
    for extra, found in (([], None), (["--min-face", "24"], 0)):
        status, out, err = _cli(["--model", str(model_dir), str(tmp_path / "small.png"), *extra], capsys)
        assert status == 0 and json.loads(out[0])["face"] == found, err
