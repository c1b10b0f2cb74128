"""The final model: the best configs retrained on train + validation, checked, and averaged.

Each member is a leading config (in the confirmation's order) trained for
``epochs_scale`` times its trial's epochs, once per input normalization named; the seed's
recipe is retrained beside them for the report's comparison. A member whose training
diverged, failed (a lost worker, an out-of-memory kill) or learned nothing is retrained
once at another seed, then left out. The final model averages the kept members'
probabilities, each on the face and its mirror image. Evidence for each default:
``experiments/README.md``, "The 50-trial search" (its final-member paragraphs); the defaults are in
:mod:`search.settings`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from fer_core.config import TrainConfig
from fer_core.model import build_cnn, build_predictor
from fer_core.splits import Splits
from fer_core.train import TrainingDiverged
from fer_core.transfer import Pretrained
from search.budget import TASK_OVERHEAD_S, makespan, now, training_seconds
from search.final.tasks import failure_reason, remote_training
from search.records import FinalModel, Member, TrialRecord
from search.settings import FinalSettings, Resources
from search.tuning.space import seed_point, to_config

log = logging.getLogger("search.final.retrain")

RESEED_OFFSET = 1000  # a member that fails is retrained once at its seed plus this
# an untried config learned if it covers this share of the way from the majority class to 100% in
# training: FER2013's 24.5% majority asks 43%, which the prior's configs pass within a pass or two
UNTRIED_SHARE = 0.25
# with one slot the members and the seed's recipe run one after another: the members get this
# share of a deadline's time, the seed's recipe the rest
MEMBERS_SHARE_ONE_SLOT = 0.75
PROGRESS_EVERY_S = 60.0  # the final stage's line of progress when it trains to a deadline


def final_config(params: dict, epochs_scale: float, mixup: float = 0.0,
                 normalize: Optional[str] = None) -> TrainConfig:
    """The config a final member trains with: the trial's, for ``epochs_scale`` times its
    epochs, with ``mixup`` (its Beta parameter; 0 leaves the trial's setting) and input
    ``normalize`` (None leaves the trial's)."""
    config = to_config(params)
    config = dataclasses.replace(config, epochs=max(1, round(config.epochs * epochs_scale)))
    config = dataclasses.replace(config, mixup=mixup) if mixup else config
    return dataclasses.replace(config, normalize=normalize) if normalize else config


def final_networks(members: Sequence[TrialRecord],
                   settings: FinalSettings) -> tuple[list[TrialRecord], list[TrainConfig]]:
    """The final model's networks: each member config once per input normalization, member by
    member. Returns the trials (repeated) and their configs."""
    trials, configs = [], []
    for trial in members:
        for normalization in settings.inputs:
            trials.append(trial)
            configs.append(final_config(trial.config, settings.epochs_scale, settings.mixup, normalization))
    return trials, configs


def plan_final(trials: Sequence[TrialRecord], members: Sequence[TrialRecord], settings: FinalSettings, n_rest: int,
               n_train: int, slots: int, seconds: float = math.inf) -> tuple[FinalSettings, float]:
    """The final stage that fits in ``seconds``, and its estimated seconds.

    Each network's time is its trial's seconds per face (:meth:`search.records.TrialRecord.image_seconds`) times
    the faces it trains on (a pass over train + validation, or its rounds, each epoch); the seed's
    recipe trains beside them, ``slots`` at a time.
    With ``seconds`` infinite (no budget) the settings stand. Otherwise the seed's recipe gets fewer of its 20
    epochs if it alone would not fit, and the members fewer epochs (down to the trial's own),
    then fewer members, until all fit; when nothing does, one member for the share of its
    trial's epochs that fits (at least one epoch).
    """
    measured = [s for s in (t.image_seconds(n_train) for t in trials) if s > 0]  # a trial failed at once: none
    typical = float(np.median(measured)) if measured else 0.0
    seed_trial = next((t for t in trials if all(t.config.get(k) == v for k, v in seed_point().items())), None)
    seed_epoch_s = n_rest * ((seed_trial.image_seconds(n_train) if seed_trial else 0.0) or typical)

    def cost(candidate: FinalSettings) -> float:
        durations = [training_seconds(final_config(m.config, candidate.epochs_scale), n_rest,
                                      m.image_seconds(n_train) or typical) + TASK_OVERHEAD_S
                     for m in members[:candidate.ensemble] for _ in candidate.inputs]
        seed_epochs = candidate.seed_epochs or TrainConfig().epochs
        return makespan(durations + [seed_epochs * seed_epoch_s + TASK_OVERHEAD_S], slots)

    if math.isinf(seconds):
        return settings, cost(settings)
    if seed_epoch_s > 0 and TrainConfig().epochs * seed_epoch_s + TASK_OVERHEAD_S > seconds:
        fitting = int((seconds - TASK_OVERHEAD_S) // seed_epoch_s)
        settings = dataclasses.replace(settings, seed_epochs=max(1, min(TrainConfig().epochs, fitting)))
    scales = sorted({s for s in (settings.epochs_scale, 2.0, 1.0) if s <= settings.epochs_scale}, reverse=True)
    sizes = sorted({n for n in (settings.ensemble, 3, 1) if n <= settings.ensemble}, reverse=True)
    for ensemble in sizes:
        for scale in scales:
            candidate = dataclasses.replace(settings, ensemble=ensemble, epochs_scale=scale)
            if cost(candidate) <= seconds:
                return candidate, cost(candidate)
    # one member for the share of its trial's epochs that fits (at least one epoch)
    smallest = dataclasses.replace(settings, ensemble=1, epochs_scale=min(scales), inputs=settings.inputs[:1])
    while smallest.epochs_scale > 0.01 and cost(smallest) > seconds:
        smallest = dataclasses.replace(smallest, epochs_scale=round(smallest.epochs_scale * 0.8, 4))
    return smallest, cost(smallest)


def checkpoint_folder(root: Path, config: dict) -> Path:
    """Where, under ``root``, the training of ``config`` leaves its state: one folder per config, so
    that a resumed run finds it whatever place the config takes among the final stage's trainings."""
    return root / hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def retrain_and_test(configs: dict[str, dict], splits: Splits, resources: Resources,
                     mirror: Optional[dict[str, bool]] = None, init: Optional[Pretrained] = None,
                     scratch: Sequence[str] = (), deadlines: Optional[dict[str, float]] = None,
                     checkpoints: Optional[Path] = None,
                     durations: Optional[dict[str, float]] = None) -> dict[str, dict]:
    """Train each named config on train + validation and test it, as parallel Ray tasks.

    ``mirror`` says, by name, whether the test also averages each face's mirror image
    (default yes). ``init``: the pretrained network the configs fine-tune, all but those
    named in ``scratch``, which train from scratch. ``deadlines``: by name, when a training must
    end (it trains the share of its epochs that fits); ``durations``: by name, the most seconds it may
    take from its start, as well. ``checkpoints``: the folder under which each
    training leaves its state and goes on from it (:func:`checkpoint_folder`). Returns, by name,
    :func:`search.final.tasks.train_and_score`'s result; or, for
    a training that did not finish, only ``diverged`` or ``failed`` with the reason, so
    that one such config does not cost the others.
    """
    import ray  # not before search.cluster.start_ray has chosen Ray's authentication mode

    mirror, deadlines, durations = mirror or {}, deadlines or {}, durations or {}
    task = remote_training(resources)
    # in the object store once for all the tasks (an argument is stored again for each call), and
    # the driver's own copy of train + validation freed at once (FER2013: 300 MB)
    train_ref, test_ref = ray.put(splits.train.concat(splits.val)), ray.put(splits.test)
    init_ref = ray.put(init) if init is not None else None
    refs = {name: task.remote(config, train_ref, test_ref, resources.threads, mirror=mirror.get(name, True),
                              init=None if name in scratch else init_ref, deadline=deadlines.get(name),
                              seconds=durations.get(name),
                              checkpoint=str(checkpoint_folder(checkpoints, config)) if checkpoints else None)
            for name, config in configs.items()}
    if deadlines:
        _wait_saying_time_left(list(refs.values()), max(deadlines.values()))
    results = {}
    for name, ref in refs.items():
        try:
            results[name] = ray.get(ref)
        except Exception as exc:  # noqa: BLE001  any task failure is this config's alone
            kind, reason = failure_reason(exc)
            results[name] = {kind: reason}
    return results


def _wait_saying_time_left(refs: list, deadline: float) -> None:
    """Wait for the trainings ``refs``, saying every :data:`PROGRESS_EVERY_S` how many are done and the
    time left before ``deadline``: a run that does not search spends its whole budget here."""
    import ray  # not before search.cluster.start_ray has chosen Ray's authentication mode

    waiting = list(refs)
    while waiting:
        _, waiting = ray.wait(waiting, num_returns=len(waiting), timeout=PROGRESS_EVERY_S)
        if waiting:
            log.info("final stage: %d of %d trainings done, %.0f s left of the budget", len(refs) - len(waiting),
                     len(refs), max(0.0, deadline - now()))


def member_learned(history: Sequence[dict], trial_history: Sequence[dict], majority: float) -> bool:
    """Whether a final member's training went as its trial's did, judged without the test split.

    Its last epoch's training accuracy must cover at least half of the way from the
    majority-class share of its training data to its trial's last training accuracy; a
    member that settles on one class stays near the majority share. A trial that itself
    learned nothing sets no bar; a config that never ran as a trial (the prior's) must cover
    :data:`UNTRIED_SHARE` of the way to 100%.
    """
    final = history[-1].get("train_accuracy") if history else None
    if not isinstance(final, (int, float)) or not math.isfinite(final):
        return False
    if not trial_history:
        return final - majority >= UNTRIED_SHARE * (1 - majority)
    trial = trial_history[-1].get("train_accuracy")
    trial = trial if isinstance(trial, (int, float)) and math.isfinite(trial) else 1.0
    return trial <= majority or final - majority >= 0.5 * (trial - majority)


def retrain_members(members: Sequence[TrialRecord], configs: Sequence[TrainConfig], splits: Splits,
                    resources: Resources, extra: Optional[dict[str, dict]] = None,
                    init: Optional[Pretrained] = None, deadlines: Optional[dict[str, float]] = None,
                    extra_first: bool = False, checkpoints: Optional[Path] = None,
                    durations: Optional[dict[str, float]] = None) -> tuple[list[Member], list[dict], dict]:
    """Retrain the final members (and the ``extra`` named configs, alongside, from scratch) on
    train + validation; the members fine-tune ``init``, if given.

    A member that diverged, failed or did not learn (:func:`member_learned`) is retrained
    once at its seed plus :data:`RESEED_OFFSET`; if that fails too it is dropped. One that started
    too late for its planned length (:func:`search.final.tasks.train_and_score`) is dropped. When no
    member learned at all, the ones that produced weights are kept rather than export
    nothing. ``deadlines``: by name (``member0``, ... and the ``extra`` names), when each training must
    end; a kept member's config then holds the epochs it trained. ``extra_first``: the ``extra``
    trainings start before the members (Ray starts tasks in the order they come), so that a member
    beyond the free slots waits for them, not they for it. ``checkpoints``, ``durations``: as
    :func:`retrain_and_test`'s.
    Returns ``(kept, dropped, extra_results)`` as :class:`FinalModel` holds them.
    Raises :class:`fer_core.train.TrainingDiverged` when no member produced weights.
    """
    labels = np.concatenate([splits.train.labels, splits.val.labels])
    majority = float(np.bincount(labels).max() / len(labels)) if len(labels) else 0.0
    names = [f"member{i}" for i in range(len(members))]
    trainings = {n: c.to_dict() for n, c in zip(names, configs)}
    trainings = {**(extra or {}), **trainings} if extra_first else {**trainings, **(extra or {})}
    first = retrain_and_test(trainings, splits, resources, mirror={name: False for name in extra or {}}, init=init,
                             scratch=list(extra or {}), deadlines=deadlines, checkpoints=checkpoints,
                             durations=durations)
    outcome = {n: (m, c, first[n]) for n, m, c in zip(names, members, configs)}

    def failure(trial: TrialRecord, result: dict) -> Optional[str]:
        for kind in ("diverged", "failed", "skipped"):
            if kind in result:
                return f"{kind} ({result[kind]})"
        if not member_learned(result["history"], trial.history, majority):
            accuracy = result["history"][-1].get("train_accuracy") if result["history"] else float("nan")
            return f"did not learn (final training accuracy {accuracy:.3f}, majority class {majority:.3f})"
        return None

    # a member skipped for want of time would be skipped again
    retry = {n: f for n, (m, _, r) in outcome.items() if (f := failure(m, r)) and "skipped" not in r}
    if retry:
        for name, reason in retry.items():
            log.warning("final member %s (trial %s) %s; retraining it at another seed",
                        name, outcome[name][0].trial_id, reason)
        reseeded = {n: dataclasses.replace(outcome[n][1], seed=outcome[n][1].seed + RESEED_OFFSET) for n in retry}
        second = retrain_and_test({n: c.to_dict() for n, c in reseeded.items()}, splits, resources, init=init,
                                  deadlines=deadlines, checkpoints=checkpoints, durations=durations)
        for name, config in reseeded.items():
            outcome[name] = (outcome[name][0], config, second[name])
    reasons = {n: failure(m, r) for n, (m, _, r) in outcome.items()}
    keep = [n for n in names if not reasons[n]]
    if not keep:
        keep = [n for n in names if "weights" in outcome[n][2]]
        if not keep:
            raise TrainingDiverged("every final member failed, twice: " + "; ".join(map(str, reasons.values())))
        log.warning("no final member learned; keeping the %d that trained", len(keep))
    kept = [Member(outcome[n][0], _as_trained(outcome[n][1], outcome[n][2]), outcome[n][2],
                   attempts=2 if n in retry else 1) for n in keep]
    dropped = [{"trial_id": outcome[n][0].trial_id, "normalize": configs[i].normalize, "reason": reasons[n],
                "seeds": [configs[i].seed] + ([outcome[n][1].seed] if n in retry else [])}
               for i, n in enumerate(names) if n not in keep]
    for row in dropped:
        log.warning("final member from trial %s dropped: %s", row["trial_id"], row["reason"])
    return kept, dropped, {name: first[name] for name in extra or {}}


def _as_trained(config: TrainConfig, result: dict) -> TrainConfig:
    """``config`` with the epochs its training ran (fewer than asked when a deadline fitted them)."""
    epochs = len(result.get("history") or ())
    return dataclasses.replace(config, epochs=epochs) if 0 < epochs < config.epochs else config


def build_final_model(members: Sequence[TrialRecord], splits: Splits, settings: FinalSettings,
                      resources: Resources, init: Optional[Pretrained] = None, deadline: Optional[float] = None,
                      slots: int = 1, checkpoints: Optional[Path] = None,
                      lengths: Optional[Sequence[float]] = None) -> FinalModel:
    """Retrain ``members`` (fine-tuning ``init``, if given; the seed's recipe beside them, from
    scratch) and assemble the final model; with a ``deadline`` (:func:`search.budget.now`) every
    training fits its epochs before it, on ``slots`` trainings at once, and with ``lengths`` (by
    member) in at most its seconds, so that members planned one after another on a slot each get
    their share (Ray starts them in the members' order). ``checkpoints``: the folder
    where the trainings leave their states and an interrupted stage's go on (:func:`retrain_and_test`)."""
    log.info("retraining the %d best configs (trials %s) on %s faces, and the seed's recipe, on train + validation",
             len(members), ", ".join(t.trial_id for t in members), " and ".join(settings.inputs))
    seed_recipe = TrainConfig() if settings.seed_epochs is None else TrainConfig(epochs=settings.seed_epochs)
    if settings.seed_epochs is not None:
        log.info("the seed's recipe trains for %d of its %d epochs, to fit the time budget", seed_recipe.epochs,
                 TrainConfig().epochs)
    trials, configs = final_networks(members, settings)
    deadlines, durations = None, None
    if lengths is not None:
        per_network = [length for length in lengths for _ in settings.inputs]
        durations = {f"member{i}": length for i, length in enumerate(per_network)}
    if deadline is not None:
        ends = deadline if slots > 1 else now() + MEMBERS_SHARE_ONE_SLOT * (deadline - now())
        deadlines = {**{f"member{i}": ends for i in range(len(configs))}, "seed": deadline}
    # trained to a deadline on several slots, the seed's recipe starts at once: a member more than
    # the slots it leaves trains after it, on its slot, in the time it left (Ray starts tasks in order)
    kept, dropped, extra = retrain_members(trials, configs, splits, resources, extra={"seed": seed_recipe.to_dict()},
                                           init=init, deadlines=deadlines,
                                           extra_first=deadline is not None and slots > 1, checkpoints=checkpoints,
                                           durations=durations)
    seed_recipe = extra["seed"]
    if "metrics" not in seed_recipe:
        log.warning("the seed's recipe did not finish its retrain: %s", next(iter(seed_recipe.values())))
        seed_recipe = {"failed": " ".join(f"{k}: {v}" for k, v in seed_recipe.items())}
    networks = []
    for i, member in enumerate(kept):
        network = build_cnn(member.config, splits.train.images.shape[1:], splits.train.n_classes,
                            name=f"member{i}")
        network.set_weights(member.result["weights"])
        networks.append(network)
    return FinalModel(build_predictor(networks, mirror=True), tuple(kept), tuple(dropped), seed_recipe)
