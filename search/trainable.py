"""The Ray Tune trainable: one trial is ``fer_core.train.fit`` reporting every epoch.

A plain function of its config, as Ray's examples write them. The data set arrives
through the object store (``tune.with_parameters``), so a trial never reads files; the
test split is not part of it. TensorFlow's threads are pinned to the CPUs the trial is
given, so concurrent trials on one machine do not fight over cores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from fer_core.data import Dataset


@dataclass(frozen=True)
class SearchData:
    """What every trial trains and validates on: the train part and its validation carve."""

    train: Dataset
    val: Dataset


def train_trial(params: dict[str, Any], data: SearchData, threads: Optional[int] = None) -> None:
    """Train the config in ``params`` and report each epoch to Tune.

    Reported per epoch: ``val_accuracy``, ``val_macro_f1``, ``val_loss``, ``train_loss``,
    ``train_accuracy``, ``learning_rate``, ``epoch``, the seconds spent training and
    validating, and the Ray ``node_id`` the trial runs on. An exception (a config that
    diverges, say) propagates, and Tune records the trial as failed with its reason.
    """
    import ray
    from ray import tune

    from fer_core.train import fit
    from search.space import to_config

    config = to_config(params)
    # Ray's own node_ip is the machine's address; the node id tells nodes of one machine apart
    node_id = ray.get_runtime_context().get_node_id()
    fit(config, data.train, data.val, on_epoch=lambda report: tune.report({**report.to_dict(), "node_id": node_id}),
        threads=threads)
