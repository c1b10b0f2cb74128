"""Trainings outside the search: one config trained on one part and scored on another, as a Ray task.

The confirmation (:mod:`search.final.confirm`) and the final stage (:mod:`search.final.retrain`) both
train configs this way, with the resources of one trial, so a GPU node serves them when
trials use GPUs. The test split reaches these tasks only from the final stage.
"""

from __future__ import annotations

from typing import Any, Optional

from fer_core.checkpoint import read_checkpoint
from fer_core.config import TrainConfig
from fer_core.dataset import Dataset
from fer_core.evaluate import evaluate_predictions
from fer_core.model import build_predictor
from fer_core.runtime import predict_proba
from fer_core.train import TrainingDiverged, fit
from search.budget import TASK_OVERHEAD_S, now
from search.settings import Resources
from search.tuning.prior import MEMBER_LEAST_SHARE

TASK_RETRIES = 1  # a task whose worker or node dies is run once more before its failure is recorded


def train_and_score(config: dict, train: Dataset, scored: Dataset, threads: int, mirror: bool = True,
                    weights: bool = True, init=None, deadline: Optional[float] = None,
                    checkpoint: Optional[str] = None, seconds: Optional[float] = None) -> dict[str, Any]:
    """Train ``config`` on ``train`` (its full epoch budget, or with a ``deadline`` (:func:`search.budget.now`)
    the share of it that fits before then, scoring included; no validation) and score it on ``scored``.
    ``seconds``: at most this long from its start, as well (a member planned beside others on its slot);
    such a member that starts with less than :data:`search.tuning.prior.MEMBER_LEAST_SHARE` of them
    left before its ``deadline`` (its slot's earlier trainings ran long) and has no saved state to go on
    from does not train: its result is only ``skipped``, with why.

    The result has the network's ``weights`` (unless ``weights`` is false), its ``history``, when
    it ``started`` (:func:`search.budget.now`), and on ``scored`` the class ``probabilities`` (each
    face averaged with its mirror image when ``mirror``) and the ``metrics`` of
    :func:`fer_core.evaluate.evaluate_predictions`.
    ``init``: the :class:`fer_core.transfer.Pretrained` network ``config`` fine-tunes, if any.
    ``checkpoint``: the folder where the training leaves its state and, when it holds one, goes on
    from it (:mod:`fer_core.checkpoint`); the result's ``resumed_from_epoch`` says from which epoch (0: none).
    """
    started = now()
    left = None if deadline is None else deadline - started
    limits = [t for t in (left, seconds) if t is not None]
    fit_seconds = min(limits) - TASK_OVERHEAD_S if limits else None
    train_config = TrainConfig.from_dict(config)
    saved = read_checkpoint(checkpoint, train_config) if checkpoint is not None else None
    if seconds is not None and left is not None and left < MEMBER_LEAST_SHARE * seconds and not saved:
        return {"skipped": f"it could start only {max(0.0, left):.0f} s before the deadline, less than "
                           f"{MEMBER_LEAST_SHARE:.0%} of its planned {seconds:.0f} s", "started": started}
    model, history = fit(train_config, train, threads=threads, init=init, seconds=fit_seconds, checkpoint=checkpoint)
    probabilities = predict_proba(build_predictor([model], mirror=mirror), scored.images)
    return {"weights": model.get_weights() if weights else None, "history": history, "started": started,
            "resumed_from_epoch": len(saved.history) if saved else 0, "probabilities": probabilities,
            "metrics": evaluate_predictions(scored.labels, probabilities.argmax(axis=1), scored.class_names)}


def remote_training(resources: Resources):
    """:func:`train_and_score` as a Ray remote function with one trial's resources."""
    import ray  # not before search.cluster.start_ray has chosen Ray's authentication mode

    return ray.remote(train_and_score).options(num_cpus=resources.cpus, num_gpus=resources.gpus,
                                               max_retries=TASK_RETRIES)


def failure_reason(exc: BaseException) -> tuple[str, str]:
    """``("diverged" | "failed", one line)`` for a training task's exception.

    Ray re-raises a task's exception as an instance of its class, so a divergence is told
    from a lost worker, an out-of-memory kill or a config that cannot be built.
    """
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    text = lines[-1][:300] if lines else type(exc).__name__
    return ("diverged" if isinstance(exc, TrainingDiverged) else "failed"), text
