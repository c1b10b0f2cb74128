"""Training: ``fit(config, train, val)`` runs the seed's two-phase recipe or any variant.

The input pipeline is ``tf.data`` (shuffle, batch, augmentation in the graph, prefetch).
The learning rate follows the config's schedule: ``two_phase`` (the seed's: the base rate
for ``phase1_share`` of the epochs, then ``phase2_factor`` times it), ``cosine`` decay,
``plateau`` (divide on a validation-loss plateau) or ``constant``. After each epoch a hook
receives an :class:`EpochReport`; the search reports through it.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from typing import Callable, Iterable, Optional

import numpy as np

from fer_core.augment import build_augmenter
from fer_core.checkpoint import CheckpointSaver, checkpoint_period_s, read_checkpoint
from fer_core.config import TrainConfig
from fer_core.dataset import IMAGE_SIZE, Dataset
from fer_core.errors import ConfigError
from fer_core.model import build_cnn
from fer_core.runtime import configure_tensorflow, predict_proba
from fer_core.transfer import build_finetuned, finetune_optimizer, make_finetune_adam

log = logging.getLogger(__name__)

PLATEAU_PATIENCE = 2  # epochs without val-loss improvement before the plateau schedule lowers the rate
SGD_MOMENTUM = 0.9  # with Nesterov's look-ahead; the usual setting for CNNs trained by SGD


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite: the configuration cannot be trained."""


@dataclass(frozen=True)
class EpochReport:
    """What one finished epoch reports: 1-based index, losses, accuracies, macro-F1, rate.

    Validation fields are ``nan`` when training runs without a validation set (the final
    refit on train + validation).
    """

    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    val_macro_f1: float
    learning_rate: float
    train_seconds: float = float("nan")  # time in this epoch's training steps
    val_seconds: float = float("nan")  # time scoring the validation set

    def to_dict(self) -> dict[str, float]:
        """A plain dict, as reported to Tune and written to histories."""
        return asdict(self)


EpochHook = Callable[[EpochReport], Optional[bool]]


def learning_rate_at(config: TrainConfig, epoch: int) -> float:
    """The scheduled learning rate of 0-based ``epoch`` (``plateau`` starts at the base rate)."""
    base = config.learning_rate
    if config.schedule == "two_phase":
        return base if epoch < phase1_epochs(config) else base * config.phase2_factor
    if config.schedule == "cosine":
        floor = base * config.phase2_factor * 0.1
        return floor + 0.5 * (base - floor) * (1 + math.cos(math.pi * epoch / config.epochs))
    return base


def phase1_epochs(config: TrainConfig) -> int:
    """Epochs at the base rate in the two-phase schedule (at least one)."""
    return max(1, min(config.epochs, int(round(config.epochs * config.phase1_share))))


def make_dataset(data: Dataset, config: TrainConfig, training: bool, threads: Optional[int] = None):
    """The ``tf.data`` pipeline of ``data``: one-hot labels, sample weights, batches.

    Training pipelines shuffle every pass (and repeat without end when ``config.round_images``
    sets the epoch's size: :func:`steps_per_epoch`) and run the augmentation layers on each batch;
    evaluation pipelines do neither. Sample weights carry the ``balanced`` class weights.
    """
    import tensorflow as tf

    images = np.asarray(data.images, dtype=np.float32)
    onehot = np.eye(data.n_classes, dtype=np.float32)[data.labels]
    weights = sample_weights(data, config)

    def rows(index: np.ndarray):
        return images[index], onehot[index], weights[index]

    # the pipeline shuffles and batches indices and reads each batch's faces from the array in
    # place: a tensor of the faces would hold two more copies of them (600 MB on FER2013):
    # experiments/README.md, "Memory of a training worker"
    ds = tf.data.Dataset.range(len(data))
    if training:
        ds = ds.shuffle(len(data), seed=config.seed, reshuffle_each_iteration=True)
        if config.round_images:  # epochs are rounds of faces: the passes run on, each reshuffled
            ds = ds.repeat()
    def read(index):
        x, y, w = tf.numpy_function(rows, [index], (tf.float32,) * 3, stateful=False)
        return (tf.ensure_shape(x, (None, *images.shape[1:])), tf.ensure_shape(y, (None, data.n_classes)),
                tf.ensure_shape(w, (None,)))

    ds = ds.batch(config.batch_size).map(read)
    augmenter = build_augmenter(config) if training else None
    if augmenter is not None:
        ds = ds.map(lambda x, y, w: (augmenter(x, training=True), y, w), num_parallel_calls=tf.data.AUTOTUNE)
    if training and config.mixup > 0:
        ds = ds.map(_mixup(config.mixup, config.seed + 8), num_parallel_calls=tf.data.AUTOTUNE)
    options = tf.data.Options()
    if threads:
        options.threading.private_threadpool_size = threads
        options.threading.max_intra_op_parallelism = 1
    options.deterministic = True
    return ds.prefetch(tf.data.AUTOTUNE).with_options(options)


def steps_per_epoch(config: TrainConfig, n_train: int) -> int:
    """Batches in one epoch of ``n_train`` training faces (:meth:`TrainConfig.images_per_epoch`)."""
    return max(1, math.ceil(config.images_per_epoch(n_train) / config.batch_size))


def _mixup(alpha: float, seed: int):
    """A batch map that blends each face with another of its batch (Zhang et al., 2018).

    The share ``lam`` of the first face is drawn per face from Beta(alpha, alpha) (as the
    ratio of two Gamma draws); labels and loss weights blend in the same shares, so the
    loss asks for the blend of the two classes.
    """
    import tensorflow as tf

    def mix(x, y, w):
        n = tf.shape(x)[0]
        first = tf.random.gamma([n], alpha, seed=seed)
        second = tf.random.gamma([n], alpha, seed=seed + 1)
        lam = first / (first + second + 1e-12)
        other = tf.random.shuffle(tf.range(n), seed=seed + 2)
        lam_x = tf.reshape(lam, [-1, 1, 1, 1])
        return (lam_x * x + (1 - lam_x) * tf.gather(x, other),
                lam[:, None] * y + (1 - lam[:, None]) * tf.gather(y, other),
                lam * w + (1 - lam) * tf.gather(w, other))

    return mix


def sample_weights(data: Dataset, config: TrainConfig) -> np.ndarray:
    """Per-image loss weights: ones, or ``n / (k * count[class])`` for ``balanced``."""
    if config.class_weight == "none":
        return np.ones(len(data), dtype=np.float32)
    counts = np.maximum(data.class_counts(), 1)
    per_class = len(data) / (data.n_classes * counts)
    return per_class[data.labels].astype(np.float32)


def fit(config: TrainConfig, train: Dataset, val: Optional[Dataset] = None,
        callbacks: Iterable = (), on_epoch: Optional[EpochHook] = None,
        threads: Optional[int] = None, verbose: int = 0,
        resume: Optional[tuple[str | os.PathLike, list[dict[str, float]]]] = None, init=None,
        seconds: Optional[float] = None, checkpoint: Optional[str | os.PathLike] = None):
    """Train the CNN of ``config`` on ``train``; return ``(model, history)``.

    ``history`` is a list of :meth:`EpochReport.to_dict`, one per epoch run. ``val`` (if
    given) is scored after every epoch: loss, accuracy and macro-F1 go to ``on_epoch``,
    which may return ``True`` to stop early. ``callbacks`` are extra Keras callbacks
    (TensorBoard, or one that saves checkpoints; they run after the validation scores
    are in the epoch's logs). ``threads`` pins TensorFlow's pools. ``resume`` is the path
    of a ``.keras`` model saved mid-training and the history so far: training continues from
    the next epoch with the optimizer's state. ``init`` (a :class:`fer_core.transfer.Pretrained`)
    fine-tunes that network with a new head instead of training ``config``'s from scratch.
    ``seconds``: train within about this long: the epochs' times say how many of the config's epochs
    fit (at least one), and its schedule runs over those (:func:`fitted_epochs`). ``checkpoint``: a
    folder where the training leaves its state (:mod:`fer_core.checkpoint`) and, when it holds this
    config's, goes on from it, over the epochs its schedule was fitted to (a finished one is only loaded).
    Raises :class:`TrainingDiverged` when the loss stops being finite.
    """
    started = time.perf_counter()
    configure_tensorflow(threads)
    import keras

    keras.backend.clear_session()  # a reused worker must not accumulate graphs of earlier trials
    saved = read_checkpoint(checkpoint, config) if checkpoint is not None and resume is None else None
    if saved is not None:
        resume = (saved.model_path, saved.history)
    keras.utils.set_random_seed(config.seed + (len(resume[1]) if resume else 0))
    if init is not None:
        make_finetune_adam()  # registered before a checkpoint that holds one is loaded
    if saved is not None and saved.finished:
        return keras.saving.load_model(saved.model_path), list(saved.history)
    if resume is not None:
        model, history = keras.saving.load_model(resume[0]), list(resume[1])
    else:
        if init is not None:
            model = build_finetuned(config, init, train.images.shape[1:], train.n_classes)
            optimizer = finetune_optimizer(config, model, steps_per_epoch(config, len(train)))
        else:
            model, optimizer = build_cnn(config, train.images.shape[1:], train.n_classes), make_optimizer(config)
        history = []
        model.compile(optimizer=optimizer,
                      loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
                      weighted_metrics=["accuracy"])
    if val is not None and val.class_names != train.class_names:
        raise ConfigError("validation classes differ from training classes")
    # the reporter goes first: it writes val_loss into the epoch's logs, which the
    # plateau schedule and any TensorBoard callback then read
    reporter = _EpochReporter(config, val, history, on_epoch)
    # the schedule reads the plan's config: with ``seconds`` its epochs are known after the first
    plan = {"config": config if saved is None else replace(config, epochs=saved.epochs)}
    if seconds is not None:
        callbacks = [_TimeFitter(plan, seconds, started, len(history)), *callbacks]
    if checkpoint is not None:  # last: it saves the epochs the time fitter has just planned
        callbacks = [*callbacks, CheckpointSaver(checkpoint, config, plan, history, checkpoint_period_s())]
    schedule = []
    if config.schedule == "plateau":
        if val is None:
            schedule.append(keras.callbacks.LearningRateScheduler(lambda e, lr: lr))
        else:
            schedule.append(keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss", factor=config.phase2_factor, patience=PLATEAU_PATIENCE,
                min_lr=config.learning_rate * config.phase2_factor ** 3, verbose=0))
    else:
        schedule.append(keras.callbacks.LearningRateScheduler(lambda e, lr: learning_rate_at(plan["config"], e)))
    model.fit(make_dataset(train, config, training=True, threads=threads), epochs=plan["config"].epochs,
              steps_per_epoch=steps_per_epoch(config, len(train)) if config.round_images else None,
              initial_epoch=len(history), callbacks=[reporter, *schedule, *callbacks], shuffle=False, verbose=verbose)
    return model, history


def seed_faces_per_s(threads: int, faces: int = 2048) -> float:
    """Faces a second that the seed's CNN trains with ``threads`` threads on this machine: its second
    round of ``faces`` random faces timed (the first builds the graph). Machines differ by 2x and more
    ("The built-in prior", experiments/README.md); a run that plans by seconds measures this first."""
    rng = np.random.default_rng(0)
    probe = Dataset(rng.random((faces, IMAGE_SIZE, IMAGE_SIZE, 1), dtype=np.float32), rng.integers(0, 7, faces),
                    tuple(f"class{i}" for i in range(7)))
    _, history = fit(TrainConfig(epochs=2, round_images=faces), probe, threads=threads)
    return faces / history[-1]["train_seconds"]


def fitted_epochs(epochs: int, seconds: float, elapsed: float, epoch_seconds: float, done: int = 1) -> int:
    """Epochs of a schedule of ``epochs`` that fit in ``seconds`` when ``done`` of them took ``elapsed``
    seconds from the start (graph building included) and one now takes ``epoch_seconds``: at least
    ``done``, at most ``epochs``."""
    if epoch_seconds <= 0:
        return epochs
    more = math.floor(max(0.0, seconds - elapsed) / epoch_seconds)
    return max(done, min(epochs, done + more))


def make_optimizer(config: TrainConfig):
    """The Keras optimizer of ``config`` at its base rate (the schedule sets it per epoch)."""
    import keras

    if config.optimizer == "sgd":
        return keras.optimizers.SGD(config.learning_rate, momentum=SGD_MOMENTUM, nesterov=True)
    return keras.optimizers.Adam(config.learning_rate)


class _TimeFitter:
    """Sets the plan's epochs after each epoch of this fit's first half to those that fit in
    ``seconds`` at the last epoch's pace (:func:`fitted_epochs`), and ends training there. Those
    epochs run at (about) the base rate in every schedule, so the schedule fitted afterwards is the
    one the config would have run over that many epochs. A lazily built Keras callback, as
    :class:`_EpochReporter`."""

    def __new__(cls, plan, seconds, started, first_epoch):
        import keras

        asked = plan["config"].epochs

        class TimeFitter(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.began = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                config = plan["config"]
                # planned after every epoch of the plan's first half (the first has a graph to build; a
                # busy machine's pace changes): the base rate runs there in every schedule but cosine,
                # whose curve then bends a little later
                if (epoch <= first_epoch + 1 or 2 * (epoch + 1) <= config.epochs) and epoch + 1 < config.epochs:
                    now = time.perf_counter()
                    epochs = fitted_epochs(asked, seconds, now - started, now - self.began, epoch + 1)
                    if epochs != config.epochs:
                        log.info("%d of the config's %d epochs fit in %.0f s", epochs, asked, seconds)
                    plan["config"] = config = replace(config, epochs=epochs)
                if epoch + 1 >= config.epochs:
                    self.model.stop_training = True

        return TimeFitter()


class _EpochReporter:
    """Scores the validation set once per epoch and hands an EpochReport to the hook.

    Written as a duck-typed Keras callback built lazily, so this module imports no
    Keras at import time.
    """

    def __new__(cls, config, val, history, on_epoch):
        import keras

        class Reporter(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.started = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                trained = time.perf_counter()
                logs = logs if logs is not None else {}
                loss = float(logs.get("loss", float("nan")))
                if not math.isfinite(loss):
                    raise TrainingDiverged(f"training loss became {loss} at epoch {epoch + 1} "
                                           f"(learning_rate={config.learning_rate:g})")
                val_loss = val_acc = val_f1 = float("nan")
                if val is not None:
                    val_loss, val_acc, val_f1 = _score(self.model, val)
                    logs.update(val_loss=val_loss, val_accuracy=val_acc, val_macro_f1=val_f1)
                scored = time.perf_counter()
                report = EpochReport(
                    epoch=epoch + 1, train_loss=loss, train_accuracy=float(logs.get("accuracy", float("nan"))),
                    val_loss=val_loss, val_accuracy=val_acc, val_macro_f1=val_f1,
                    learning_rate=float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)),
                    train_seconds=trained - self.started, val_seconds=scored - trained if val is not None else 0.0)
                history.append(report.to_dict())
                if on_epoch is not None and on_epoch(report):
                    self.model.stop_training = True

        return Reporter()


def _score(model, data: Dataset) -> tuple[float, float, float]:
    from sklearn.metrics import f1_score

    proba = predict_proba(model, data.images)
    picked = np.clip(proba[np.arange(len(data)), data.labels], 1e-7, 1.0)
    predicted = proba.argmax(axis=1)
    accuracy = float((predicted == data.labels).mean())
    macro_f1 = float(f1_score(data.labels, predicted, average="macro",
                              labels=np.arange(data.n_classes), zero_division=0))
    return float(-np.log(picked).mean()), accuracy, macro_f1
