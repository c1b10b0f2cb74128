"""A config's score against its cost: within the noise, the cheaper config wins (``--cost-weight``).

A validation accuracy p measured on n faces is uncertain by its standard error
sqrt(p(1-p)/n): 2.9 points at 85% on CK+'s 156 validation faces, 0.8 at 60% on FER2013's
3,589. The one-standard-error rule (Hastie, Tibshirani & Friedman, *The Elements of
Statistical Learning*, 7.10) takes the simplest model within one standard error of the
best; here the simplest is the cheapest, in seconds per training face. With weight w:

* a ranking takes next the best config left, or the cheapest within w standard errors of
  it if that one is at least twice as cheap (:func:`cheapest_within_noise`);
* the searcher is told a trial's score less w/2 standard errors for each doubling of its
  cost over the seed recipe's (:func:`cost_adjusted`): to TPE, a config 4 times as slow
  must be w standard errors better to look as good.

Weight 0 ranks and searches by the score alone.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence, TypeVar

Item = TypeVar("Item")

# a tie goes to a config at least this many times cheaper: a few per cent of epoch time is
# the noise of two trials sharing a machine, and buys nothing worth a lower score
CHEAPER_BY = 2.0


def standard_error(score: float, faces: int) -> float:
    """The binomial standard error of a share ``score`` measured on ``faces`` faces; 0 when unknown."""
    if faces <= 0 or not math.isfinite(score):
        return 0.0
    share = min(1.0, max(0.0, score))
    return math.sqrt(share * (1 - share) / faces)


def cheapest_within_noise(items: Sequence[Item], score: Callable[[Item], float], cost: Callable[[Item], float],
                          faces: int, weight: float) -> list[Item]:
    """``items``, given best first, reordered: each next one is the best scoring of those left,
    unless a config within ``weight`` standard errors (on ``faces`` faces) of it costs at most
    1/:data:`CHEAPER_BY` as much; then the cheapest such config. An unknown cost (0 or less)
    counts as the dearest; weight 0 keeps the order."""
    left = list(items)
    if weight <= 0:
        return left

    def dearness(item: Item) -> float:
        return cost(item) if cost(item) > 0 else math.inf

    ordered = []
    while left:
        best = max(left, key=score)  # max: the first of equals, as given
        floor = score(best) - weight * standard_error(score(best), faces)
        cheapest = min((item for item in left if score(item) >= floor), key=dearness)
        pick = cheapest if dearness(cheapest) * CHEAPER_BY <= dearness(best) else best
        ordered.append(pick)
        left = [item for item in left if item is not pick]
    return ordered


def cost_adjusted(score: float, cost: float, reference_cost: float, faces: int, weight: float) -> float:
    """``score`` less ``weight``/2 of its standard error for each doubling of ``cost`` over
    ``reference_cost`` (plus as much for each halving); ``score`` itself when a cost is unknown."""
    if weight <= 0 or not (cost > 0 and reference_cost > 0) or not math.isfinite(score):
        return score
    return score - weight * standard_error(score, faces) / 2 * math.log2(cost / reference_cost)
