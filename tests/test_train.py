"""Augmentation in the input pipeline, two-phase training with its per-epoch hook, export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fer_core.config import TrainConfig
from fer_core.data import load
from fer_core.dataset import Dataset
from fer_core.splits import split

SMALL = dict(conv_blocks=2, base_filters=8, dense_units=32, padding="same", batch_size=32)


def _one_image() -> Dataset:
    yy, xx = np.mgrid[0:48, 0:48]
    image = ((xx < 20) & (yy > 10)).astype(np.float32)[None, :, :, None]
    return Dataset(images=image, labels=np.array([0]), class_names=("a", "b"))


def _batch(ds) -> np.ndarray:
    return next(iter(ds))[0].numpy()


def test_augmentation_runs_in_training_pipeline_only() -> None:
    from fer_core.train import make_dataset

    data = _one_image()
    config = TrainConfig(batch_size=1)
    train = make_dataset(data, config, training=True)
    first, second = _batch(train), _batch(train)
    assert not np.allclose(first, data.images) and not np.allclose(first, second)
    evaluation = make_dataset(data, config, training=False)
    np.testing.assert_array_equal(_batch(evaluation), data.images)


def test_all_augmentation_off_leaves_training_images_untouched() -> None:
    from fer_core.augment import build_augmenter
    from fer_core.train import make_dataset

    config = TrainConfig(rotation=0, shift=0, shear=0, zoom=0, flip=False, contrast=0, brightness=0, batch_size=1)
    assert not config.augments and build_augmenter(config) is None
    np.testing.assert_array_equal(_batch(make_dataset(_one_image(), config, training=True)), _one_image().images)


def test_each_augmentation_field_adds_its_layer() -> None:
    from fer_core.augment import build_augmenter

    none = dict(rotation=0, shift=0, shear=0, zoom=0, flip=False)
    names = {"rotation": "RandomRotation", "shift": "RandomTranslation", "shear": "RandomShear",
             "zoom": "RandomZoom", "contrast": "RandomContrast", "brightness": "RandomBrightness",
             "erasing": "RandomErasing"}
    for field, layer in names.items():
        augmenter = build_augmenter(TrainConfig(**{**none, field: 0.1}))
        assert [type(x).__name__ for x in augmenter.layers] == [layer]


def test_mixup_blends_faces_and_labels_of_one_batch_in_the_same_shares() -> None:
    """Each mixed face is lam * one face + (1 - lam) * another of the batch, and its label is
    the same blend of their labels; evaluation pipelines are not mixed."""
    from fer_core.train import make_dataset

    # 8 constant faces, each of its own class, so that a label says which faces were blended
    values = np.arange(1, 9, dtype=np.float32) / 10
    data = Dataset(images=np.broadcast_to(values[:, None, None, None], (8, 48, 48, 1)).copy(),
                   labels=np.arange(8), class_names=tuple("abcdefgh"))
    config = TrainConfig(rotation=0, shift=0, shear=0, zoom=0, flip=False, batch_size=8, mixup=0.4)
    x, y, w = (t.numpy() for t in next(iter(make_dataset(data, config, training=True))))
    np.testing.assert_allclose(y.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(w, 1.0, atol=1e-6)
    assert (np.count_nonzero(y > 1e-6, axis=1) <= 2).all()  # at most two faces in each blend
    np.testing.assert_allclose(x.reshape(8, -1), np.broadcast_to(y @ values, (48 * 48, 8)).T, atol=1e-5)
    assert (y.max(axis=1) < 0.99).any()  # some faces were really blended
    plain = next(iter(make_dataset(data, config, training=False)))[0].numpy()
    np.testing.assert_array_equal(plain, data.images)


def test_balanced_class_weights() -> None:
    from fer_core.train import sample_weights

    data = Dataset(images=np.zeros((4, 48, 48, 1), np.float32), labels=np.array([0, 0, 0, 1]), class_names=("a", "b"))
    np.testing.assert_allclose(sample_weights(data, TrainConfig(class_weight="balanced")), [2 / 3] * 3 + [2.0])
    np.testing.assert_allclose(sample_weights(data, TrainConfig()), 1.0)


def test_learning_rate_schedules() -> None:
    from fer_core.train import learning_rate_at

    seed = TrainConfig()
    rates = [learning_rate_at(seed, e) for e in range(20)]
    assert rates[:15] == [1e-3] * 15 and np.allclose(rates[15:], 1e-4)
    cosine = TrainConfig(schedule="cosine", epochs=10)
    values = [learning_rate_at(cosine, e) for e in range(10)]
    assert values[0] == 1e-3 and all(a > b for a, b in zip(values, values[1:]))


def test_fitted_epochs_are_those_that_fit_in_the_time_left() -> None:
    from fer_core.train import fitted_epochs

    assert fitted_epochs(100, seconds=60, elapsed=15, epoch_seconds=10) == 5  # 1 done, 4 more in 45 s
    assert fitted_epochs(3, seconds=600, elapsed=15, epoch_seconds=10) == 3  # never more than asked
    assert fitted_epochs(100, seconds=10, elapsed=15, epoch_seconds=10, done=2) == 2  # never fewer than done


@pytest.mark.slow
def test_training_within_seconds_runs_the_schedule_over_the_epochs_that_fit(faces) -> None:
    """The two-phase schedule compressed: the epochs that fit in the time, the lowered rate last."""
    import time

    from fer_core.train import fit

    train, _ = faces
    config = TrainConfig(**SMALL, epochs=500, phase1_share=0.5)
    began = time.perf_counter()
    _, history = fit(config, train, threads=2, seconds=20)
    took = time.perf_counter() - began
    assert 2 <= len(history) < 500 and took < 20 + 2 * history[-1]["train_seconds"] + 5
    rates = [row["learning_rate"] for row in history]
    assert rates[0] == pytest.approx(config.learning_rate)
    assert rates[-1] == pytest.approx(config.learning_rate * config.phase2_factor)


def test_the_seed_s_cnn_measures_its_training_rate_on_this_machine() -> None:
    """The rate a run too short to search plans with: one timed round after the graph is built, so
    above the rate of the whole call, and of its order."""
    import time

    from fer_core.train import seed_faces_per_s

    began = time.perf_counter()
    rate = seed_faces_per_s(threads=1, faces=512)
    overall = 2 * 512 / (time.perf_counter() - began)
    assert overall < rate < 20 * overall


@pytest.fixture(scope="module")
def faces() -> tuple[Dataset, Dataset]:
    data = load("synthetic:700")
    return split(data, "random")


@pytest.mark.slow
@pytest.mark.parametrize("optimizer, rate, normalize, keras_name", [("adam", 1e-3, "none", "Adam"),
                                                                    ("sgd", 1e-2, "standardize", "SGD")])
def test_training_on_synthetic_faces_beats_chance_and_reports_every_epoch(faces, optimizer: str, rate: float,
                                                                          normalize: str, keras_name: str) -> None:
    from fer_core.train import SGD_MOMENTUM, fit

    train, val = faces
    reports = []
    # the seed's network without augmentation learns these faces within a few epochs (by SGD,
    # on standardized faces, as every trial of the search has them)
    config = TrainConfig(epochs=6, phase1_share=5 / 6, batch_size=16, rotation=0, shift=0, shear=0, zoom=0, flip=False,
                         optimizer=optimizer, learning_rate=rate, normalize=normalize)
    model, history = fit(config, train, val, on_epoch=reports.append, threads=2)
    assert type(model.optimizer).__name__ == keras_name
    if optimizer == "sgd":
        assert model.optimizer.nesterov and model.optimizer.momentum == SGD_MOMENTUM
    assert [r.epoch for r in reports] == [1, 2, 3, 4, 5, 6] and len(history) == 6
    assert all(np.isfinite([r.train_loss, r.val_loss, r.val_accuracy, r.val_macro_f1]).all() for r in reports)
    assert np.allclose([r.learning_rate for r in reports], [rate] * 5 + [rate / 10])
    chance = 1 / train.n_classes
    assert reports[-1].val_accuracy > 2 * chance, reports[-1]
    assert history[-1] == reports[-1].to_dict()


@pytest.mark.slow
def test_hook_can_stop_training_early(faces) -> None:
    from fer_core.train import fit

    train, val = faces
    _, history = fit(TrainConfig(**SMALL, epochs=5), train, val, on_epoch=lambda r: r.epoch >= 2)
    assert len(history) == 2


@pytest.mark.slow
def test_export_round_trip_predicts_the_same_classes(faces, tmp_path: Path) -> None:
    """The exported ensemble (three members: raw, standardized and equalized input; mirror
    test-time augmentation) predicts the same in every form."""
    from fer_core.export import export_model, load_predictors
    from fer_core.model import build_cnn, build_predictor
    from fer_core.staging import current_umask
    from fer_core.train import fit, predict_proba

    train, val = faces
    members = []
    for i, normalize in enumerate(["none", "standardize", "equalize"]):
        config = TrainConfig(**SMALL, epochs=1, normalize=normalize)
        trained, _ = fit(config, train)
        member = build_cnn(config, name=f"member{i}", n_classes=train.n_classes)
        member.set_weights(trained.get_weights())
        members.append(member)
    model = build_predictor(members, mirror=True)
    target = export_model(model, tmp_path / "best", train.class_names, TrainConfig(**SMALL).to_dict(),
                          metrics={"accuracy": 0.5}, data_fingerprint=train.fingerprint())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]  # no staging folder left behind
    assert target.stat().st_mode & 0o777 == 0o777 & ~current_umask()  # as mkdir makes it, not mkdtemp's 0700
    card = json.loads((target / "model_card.json").read_text())
    assert card["class_names"] == list(train.class_names)
    assert card["input_shape"] == [None, 48, 48, 1]
    assert card["data_fingerprint"] == train.fingerprint() and card["config"]["conv_blocks"] == 2
    batch = val.images[:32]
    expected = predict_proba(model, batch)
    for form, predict in load_predictors(target).items():
        got = predict(batch)
        assert got.shape == expected.shape, form
        np.testing.assert_array_equal(got.argmax(axis=1), expected.argmax(axis=1), err_msg=form)
        np.testing.assert_allclose(got, expected, atol=1e-4, err_msg=form)


def test_fingerprint_tracks_content() -> None:
    a = _one_image()
    b = Dataset(images=a.images.copy(), labels=a.labels, class_names=a.class_names)
    c = Dataset(images=1 - a.images, labels=a.labels, class_names=a.class_names)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


@pytest.mark.slow
def test_training_resumes_from_a_saved_model_at_the_next_epoch(faces, tmp_path: Path) -> None:
    from fer_core.train import fit

    train, val = faces
    config = TrainConfig(**SMALL, epochs=4, phase1_share=0.5)
    model, history = fit(config, train, val, on_epoch=lambda r: r.epoch >= 2)
    model.save(tmp_path / "mid.keras")
    _, resumed = fit(config, train, val, resume=(tmp_path / "mid.keras", history))
    assert [row["epoch"] for row in resumed] == [1, 2, 3, 4]
    assert resumed[:2] == history
    assert np.allclose([row["learning_rate"] for row in resumed[2:]], [1e-4, 1e-4])


@pytest.mark.slow
def test_a_crash_while_replacing_an_exported_model_leaves_the_old_one_whole(faces, tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A second export into the same folder dies at the moment it would swap its new folder in:
    the export raises, and the first model is there byte for byte, every form of it loads and
    predicts as before, and no staging folder is left beside it."""
    import hashlib

    from fer_core.export import export_model, load_predictors
    from fer_core.runtime import predict_proba
    from fer_core.train import fit

    def snapshot(folder: Path) -> dict[str, str]:
        return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(folder.rglob("*")) if p.is_file()}

    train, val = faces
    model, _ = fit(TrainConfig(**SMALL, epochs=1), train)
    best = export_model(model, tmp_path / "best", train.class_names, {}, metrics={"run": 1})
    before = snapshot(best)

    def crash_at_the_swap(staging: Path, target: Path) -> bool:  # export's one move of the new folder into place
        assert staging.name.startswith(".best-") and target == best and (staging / "model_card.json").is_file()
        raise OSError("simulated crash at the swap")

    monkeypatch.setattr("fer_core.export._exchange", crash_at_the_swap)
    with pytest.raises(OSError, match="simulated crash at the swap"):
        export_model(model, best, train.class_names, {}, metrics={"run": 2})
    monkeypatch.undo()
    assert snapshot(best) == before
    assert json.loads((best / "model_card.json").read_text())["metrics"] == {"run": 1}
    expected = predict_proba(model, val.images[:8])
    for backend, predict in load_predictors(best).items():
        np.testing.assert_allclose(predict(val.images[:8]), expected, atol=1e-4, err_msg=backend)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]


@pytest.mark.slow
def test_an_epoch_of_rounds_trains_that_many_faces_passing_over_the_data_as_often_as_needed(faces) -> None:
    """With ``round_images`` an epoch is that many faces, whether fewer than a pass or more."""
    import keras

    from fer_core.train import fit

    train, _ = faces
    batches: list[int] = []

    class Count(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            batches.append(0)

        def on_train_batch_end(self, batch, logs=None):
            batches[-1] += 1

    for images in (48, len(train) + 100):
        batches.clear()
        config = TrainConfig(**{**SMALL, "batch_size": 16}, epochs=3, round_images=images)
        _, history = fit(config, train, callbacks=[Count()])
        assert len(history) == 3 and batches == [-(-images // 16)] * 3, (images, batches)


def test_fingerprint_hashes_in_chunks_and_a_join_without_joining(monkeypatch) -> None:
    """Hashed a few images at a time, the fingerprint is the whole set's (so ``--resume`` of an
    older run still matches), and train + validation hash as their join does."""
    import hashlib

    import fer_core.dataset
    from fer_core.synthetic import make_faces

    data = make_faces(30, seed=4)
    whole = hashlib.sha256()
    whole.update("\n".join(data.class_names).encode())
    whole.update(data.labels.astype(np.int64).tobytes())
    whole.update((data.images * 255).round().astype(np.uint8).tobytes())
    monkeypatch.setattr(fer_core.dataset, "HASH_CHUNK", 7)
    assert data.fingerprint() == whole.hexdigest()[:16]
    first, second = data.subset(np.arange(0, 12)), data.subset(np.arange(12, 30))
    assert first.fingerprint(second) == first.concat(second).fingerprint() == data.fingerprint()
    assert second.fingerprint(first) != data.fingerprint()


PIPELINE_MEMORY = """
import os
import numpy as np
from fer_core.config import TrainConfig
from fer_core.dataset import Dataset
from fer_core.runtime import configure_tensorflow
from fer_core.train import make_dataset
configure_tensorflow(1)
rss = lambda: int(open(f"/proc/{os.getpid()}/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
images = np.random.default_rng(0).random((8192, 48, 48, 1), dtype=np.float32)
data = Dataset(images=images, labels=np.arange(8192) % 3, class_names=("a", "b", "c"))
before = rss()
for batch in make_dataset(data, TrainConfig(batch_size=64, round_images=8192), training=True, threads=1).take(2 * 128):
    pass
print((rss() - before) / images.nbytes)
"""


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads resident memory from /proc (Linux)")
def test_the_training_pipeline_holds_no_second_copy_of_the_faces() -> None:
    """Building the training pipeline and two passes over it grow the process by well under
    the faces' size.

    A tensor of the faces would be two copies of them, and tf.data's default graph rewrites
    one more (experiments/README.md, "Memory of a training worker").
    """
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", PIPELINE_MEMORY], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    growth = float(result.stdout.strip().splitlines()[-1])
    assert growth < 0.5, f"iterating the pipeline grew the process by {growth:.2f} times the faces' size"
