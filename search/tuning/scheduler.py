"""Early stopping that keeps pace with the sampler: ASHA judged against recent trials.

Ray's ASHA stops a trial at a rung when it falls below a percentile of *every* trial
that ever reached that rung. Next to a model-based sampler that is too lenient: the
first trials are random and mostly poor, they stay in the rung's record for good, and
once TPE has found the good region nearly every new trial beats them, so nearly every
trial runs its whole budget (``experiments/README.md``, "The 50-trial search").

:class:`RecentASHAScheduler` keeps Ray's asynchronous rungs (``grace_period`` times
powers of ``reduction_factor``) but compares a trial with the last ``window`` trials that
reached the rung, the population the sampler proposes now, and lets on only the best
``keep`` share of them. Until ``window`` trials have reached a rung it compares with
those there are, as ASHA does.

A trial that scores below ``floor`` (what answering the most common class scores) stops
at any rung, even the first there, whom ASHA always lets on (``experiments/README.md``,
"Held to the majority class").
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from ray.tune.schedulers import AsyncHyperBandScheduler
from ray.tune.schedulers.async_hyperband import _Bracket


class _RecentBracket(_Bracket):
    """An ASHA bracket whose cutoff is a percentile of the rung's last ``window`` results."""

    def __init__(self, *args, window: int, keep: float, floor: Optional[float] = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.window = window
        self.keep = keep
        self.floor = floor

    def cutoff(self, recorded) -> Optional[float]:
        if not recorded:
            return self.floor
        recent = list(recorded.values())[-self.window:]  # dicts keep the order results arrived in
        cutoff = float(np.nanpercentile(recent, (1 - self.keep) * 100))
        return cutoff if self.floor is None else max(cutoff, self.floor)


class RecentASHAScheduler(AsyncHyperBandScheduler):
    """Asynchronous successive halving against the last ``window`` trials at each rung.

    ``keep`` is the share of them a trial must be among to go on (ASHA's own is
    ``1 / reduction_factor``); a trial scoring below ``floor`` stops at any rung. The other
    arguments are :class:`AsyncHyperBandScheduler`'s, with one bracket.
    """

    def __init__(self, *, metric: str, mode: str, max_t: int, grace_period: int, reduction_factor: float,
                 window: int, keep: float, floor: Optional[float] = None) -> None:
        if window < 1:
            raise ValueError(f"window {window}: expected an integer >= 1")
        if not 0.0 < keep <= 1.0:
            raise ValueError(f"keep {keep}: expected a share in (0, 1]")
        if floor is not None and mode != "max":
            raise ValueError(f"floor {floor} with mode {mode!r}: a floor is a score to stay above (mode 'max')")
        super().__init__(metric=metric, mode=mode, max_t=max_t, grace_period=grace_period,
                         reduction_factor=reduction_factor, brackets=1)
        self._brackets = [_RecentBracket(grace_period, max_t, reduction_factor, s=0, window=window, keep=keep,
                                         floor=floor)]
        self.window = window
        self.keep = keep
        self.floor = floor

    @property
    def rungs(self) -> list[int]:
        """The epochs at which trials are judged, first to last."""
        return sorted(int(milestone) for milestone, _ in self._brackets[0]._rungs)
