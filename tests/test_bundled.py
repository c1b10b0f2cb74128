"""The FER2013 model bundled with the package: its builder, its card against its files, predicting
without --model, and --init builtin.

The builder is tested end to end on a small stand-in: synthetic faces laid out as FER2013's image
folders (its seven class names, Training_/PublicTest_/PrivateTest_ files), a one-trial search,
packaged into a temporary folder. The tests of the real bundled model skip with "bundled model not
built yet" while fer_core/models/fer2013/ holds no model file.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, search_run
from fer_core.bundled import (BUNDLED_DIR, FER2013_CLASSES, FORMS, NOT_BUILT, bundled_model_dir, check_bundle,
                              is_built)
from fer_core.errors import ConfigError
from fer_core.export import CARD_FILE

QUICK_RUN = ("--trials", "1", "--max-epochs", "1", "--confirm", "0", "--ensemble", "1", "--final-epochs-scale", "1")
TF_START_UP = ("absl::InitializeLog", "cudart_stub", "cuda drivers")  # TensorFlow's C++ start-up lines
built = pytest.mark.skipif(not is_built(), reason=NOT_BUILT)


def builder(*args: str) -> subprocess.CompletedProcess:
    """``python -m experiments.build_bundled_model ARGS`` from the project folder, its output captured."""
    return subprocess.run([sys.executable, "-m", "experiments.build_bundled_model", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)


def write_fer2013_lookalike(root: Path, n: int = 300) -> Path:
    """Synthetic faces in FER2013's image layout: its class folders, 60/20/20 Training/PublicTest/PrivateTest."""
    from PIL import Image

    from fer_core.synthetic import make_faces

    faces = make_faces(n, seed=0)
    usage = np.random.default_rng(0).choice(["Training", "PublicTest", "PrivateTest"], size=n, p=[0.6, 0.2, 0.2])
    for i, (image, label, part) in enumerate(zip(faces.images, faces.labels, usage)):
        folder = root / ("train" if part == "Training" else "test") / FER2013_CLASSES[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(image[..., 0] * 255).astype(np.uint8)).save(folder / f"{part}_{i:05d}.png")
    return root


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, subprocess.CompletedProcess]:
    """(data, run folder, bundle folder, the builder's result): a one-trial build on the look-alike."""
    root = tmp_path_factory.mktemp("bundled")
    data = write_fer2013_lookalike(root / "fer2013")
    result = builder("--data", str(data), "--time-budget", "10m", "--output", str(root / "runs"), "--name", "b",
                     "--target", str(root / "bundle"), "--", *QUICK_RUN)
    assert result.returncode == 0, result.stderr[-3000:]
    return data, root / "runs" / "b", root / "bundle", result


# --------------------------------------------------------------------------- the builder, on a stand-in

@pytest.mark.slow
def test_the_builder_packages_one_file_per_form_and_a_card_that_matches_them(stand_in) -> None:
    from fer_core.predictor import Predictor

    data, run_dir, bundle, result = stand_in
    card = check_bundle(bundle)
    assert sorted(p.name for p in bundle.iterdir()) == sorted([*FORMS.values(), CARD_FILE])  # no saved_model/
    assert tuple(card["class_names"]) == FER2013_CLASSES and card["input_shape"] == [None, 48, 48, 1]
    test = card["privatetest"]
    report = json.loads((run_dir / "report.json").read_text())
    assert test["n"] == report["n_test"] and test["accuracy"] == pytest.approx(report["test_accuracy"], abs=1e-3)
    assert test["part"] == "PrivateTest" and test["tflite_agreement"] >= 0.99
    low, high = test["accuracy_ci95"]
    assert low <= test["accuracy"] <= high and set(test["per_class_recall"]) == set(FER2013_CLASSES)
    build = card["bundle"]
    assert build["command"].startswith("python -m search.run --data") and "--split usage" in build["command"]
    assert "--ensemble 1" in build["command"] and build["seed"] == 0 and build["time_budget"] == "10m"
    assert len(build["commit"].split()[0]) == 40
    assert build["data_fingerprint"] == json.loads((run_dir / "run.json").read_text())["fingerprint"]
    assert "PrivateTest" in result.stdout and "rebuild: python -m search.run" in result.stdout
    for backend in FORMS:
        predictor = Predictor.load(bundle, backend=backend)
        assert predictor.class_names == FER2013_CLASSES


@pytest.mark.slow
def test_a_finished_run_is_packaged_again_from_its_folder(stand_in, tmp_path: Path) -> None:
    data, run_dir, bundle, _ = stand_in
    result = builder("--data", str(data), "--from-run", str(run_dir), "--target", str(tmp_path / "again"))
    assert result.returncode == 0, result.stderr[-3000:]
    first, again = check_bundle(bundle), check_bundle(tmp_path / "again")
    assert first["sha256"] == again["sha256"] and first["privatetest"] == again["privatetest"]
    assert first["bundle"]["command"] == again["bundle"]["command"]


@pytest.mark.slow
def test_a_card_that_disagrees_with_its_files_is_one_config_error(stand_in, tmp_path: Path) -> None:
    import shutil

    folder = Path(shutil.copytree(stand_in[2], tmp_path / "bundle"))
    card = json.loads((folder / CARD_FILE).read_text())
    card["file_bytes"]["model.tflite"] += 1
    (folder / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ConfigError, match=r"model\.tflite: \d+ bytes, not the \d+ bytes"):
        check_bundle(folder)
    (folder / "saved_model").mkdir()
    with pytest.raises(ConfigError, match="expected exactly model.keras, model.tflite beside model_card.json"):
        check_bundle(folder)


@pytest.mark.skipif(is_built(), reason="the bundled model is built: test_init_builtin_fine_tunes_the_bundled_model "
                    "makes the same checks on it")
@pytest.mark.slow
def test_init_fine_tunes_a_bundle_and_keeps_tensorflows_start_up_quiet(stand_in, tmp_path: Path) -> None:
    """``--init`` loads the model in the driver: TensorFlow's start-up lines stay muted there too."""
    result = search_run("--data", "synthetic:200", "--init", str(stand_in[2]), *QUICK_RUN, "--time-budget", "90s",
                        "--output", str(tmp_path), "--name", "i")
    assert result.returncode == 0, result.stderr[-3000:]
    assert not [line for line in result.stderr.splitlines() if any(s in line for s in TF_START_UP)]
    report = json.loads((tmp_path / "i" / "report.json").read_text())
    assert report["initialized_from"]["source"] == str(stand_in[2].resolve())


def test_the_builder_refuses_data_that_is_not_fer2013(tmp_path: Path) -> None:
    from conftest import write_image_folder

    folder = write_image_folder(tmp_path / "ck", {"anger": 3, "contempt": 3, "happy": 3})
    result = builder("--data", str(folder), "--target", str(tmp_path / "bundle"))
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "error" in line]  # beside the loader's progress line
    assert errors == [
        f"build_bundled_model: error: --data {folder}: classes anger, contempt, happy; expected FER2013's seven, "
        f"{', '.join(FER2013_CLASSES)} (its image layout: train/ and test/ of class folders)"]
    assert not (tmp_path / "bundle").exists()


def test_the_builder_refuses_a_split_after_the_dashes(tmp_path: Path) -> None:
    result = builder("--data", str(tmp_path), "--", "--split", "random")
    assert result.returncode == 2 and "--split after --: the builder sets it" in result.stderr


def test_a_folder_without_a_model_file_is_not_built(tmp_path: Path) -> None:
    (tmp_path / CARD_FILE).write_text("{}")
    assert not is_built(tmp_path)
    assert is_built() == (BUNDLED_DIR / "model.keras").is_file()


def test_the_package_data_takes_the_bundles_files() -> None:
    """pyproject's package-data names each form and the card, so that every install carries them."""
    import fnmatch
    import tomllib

    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    package = ".".join(BUNDLED_DIR.relative_to(ROOT).parts)
    for name in [*FORMS.values(), CARD_FILE]:
        assert any(fnmatch.fnmatch(name, p) for p in patterns[package]), name


@pytest.mark.skipif(is_built(), reason="the bundled model is built")
def test_without_the_model_files_the_bundle_is_one_clear_error() -> None:
    with pytest.raises(ConfigError, match="bundled model not built yet"):
        bundled_model_dir()
    result = search_run("--data", "synthetic:200", "--init", "builtin", "--trials", "1")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("search.run: error: --init builtin: ") and NOT_BUILT in result.stderr


# --------------------------------------------------------------------------- the real bundled model

@built
def test_the_bundled_models_card_matches_its_files() -> None:
    from fer_core.predictor import Predictor

    card = check_bundle()
    assert sum(card["file_bytes"].values()) <= 10 * 2**20
    for backend in FORMS:
        predictor = Predictor.load(backend=backend)
        assert predictor.folder == BUNDLED_DIR and predictor.class_names == FER2013_CLASSES
    t = card["privatetest"]
    assert t["n"] == 3589 and t["majority_class"] == "happy" and t["accuracy"] > t["majority_accuracy"]


@built
@pytest.mark.slow
def test_predict_without_a_model_names_the_astronauts_expression(photos: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "fer_core.predict", str(photos / "astronaut.png")], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    line = json.loads(result.stdout.splitlines()[0])
    assert line["model_folder"] == str(BUNDLED_DIR) and line["label"] in FER2013_CLASSES
    assert line["face"] == 0 and len(line["box"]) == 4


@built
@pytest.mark.slow
def test_init_builtin_fine_tunes_the_bundled_model(tmp_path: Path) -> None:
    result = search_run("--data", "synthetic:200", "--init", "builtin", *QUICK_RUN, "--time-budget", "90s",
                        "--output", str(tmp_path), "--name", "b")
    assert result.returncode == 0, result.stderr[-3000:]
    assert not [line for line in result.stderr.splitlines() if any(s in line for s in TF_START_UP)]
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert report["initialized_from"]["source"] == str(BUNDLED_DIR)
    assert report["initialized_from"]["class_names"] == list(FER2013_CLASSES)
