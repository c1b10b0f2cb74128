"""``--points``: configs the search tries first, after the seed's recipe, checked against the space."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Optional

from fer_core.config import TrainConfig
from fer_core.errors import ConfigError
from search.tuning.space import define_space, seed_point, to_config

log = logging.getLogger("search.tuning.points")


def read_points(path: Optional[str]) -> list[dict[str, Any]]:
    """The warm-start configs of ``--points``, each completed with the seed's values.

    Keys are the search space's parameter names (``TrainConfig`` fields and
    ``augment``); a typo or a bad value is an error naming the file and the point. A
    value the space holds constant (or leaves to ``TrainConfig``'s default) is a warning:
    the trial is built from the sample alone, as every trial is.
    """
    if path is None:
        return []
    try:
        loaded = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"--points {path}: cannot read ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--points {path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    points = [loaded] if isinstance(loaded, dict) else loaded
    if not isinstance(points, list) or not all(isinstance(p, dict) for p in points):
        raise ConfigError(f"--points {path}: expected a JSON object or a list of objects")
    seed = seed_point()
    known = set(seed) | {f for f in TrainConfig().to_dict() if f != "epochs"}
    completed = []
    for i, point in enumerate(points, start=1):
        unknown = sorted(set(point) - known)
        if unknown:
            raise ConfigError(f"--points {path}, point {i}: unknown parameter(s) {', '.join(unknown)}")
        merged = {**seed, **{k: v for k, v in point.items() if k in known}}
        try:
            to_config(merged)
            trial = _point_trial(merged)
            held = define_space(trial, max_epochs=1)
        except ConfigError as exc:
            raise ConfigError(f"--points {path}, point {i}: {exc}") from None
        runs_with = to_config({**trial.params, **held}).to_dict()
        for name, value in point.items():
            if name in runs_with and value != runs_with[name]:
                log.warning("--points %s, point %d: %s=%r is held at %r by the search space", path, i, name,
                            value, runs_with[name])
        completed.append(merged)
    return completed


def _point_trial(params: dict[str, Any]):
    """An Optuna ``FixedTrial`` of ``params`` whose choice outside the space is a ConfigError naming it."""
    import optuna

    class PointTrial(optuna.trial.FixedTrial):
        def suggest_categorical(self, name, choices):
            if params.get(name) not in choices:
                raise ConfigError(f"{name}={params.get(name)!r} is not among the search space's choices "
                                  f"{', '.join(map(repr, choices))}")
            return super().suggest_categorical(name, choices)

    return PointTrial(params)
