"""The search's sampler: a random start, then Optuna's TPE.

TPE models the finished trials; before there are enough of them its suggestions are no
better than random ones, and a start that happens to find one fair configuration can hold
it there. So the search samples at random first, for two fifths of the trials (at most
20, :attr:`search.settings.SearchSettings.startup_trials`). Under ``--time-budget`` the number of trials the search will
run is not known beforehand: on CK+ a 10-minute budget ran from 23 to 86 trials, and at
23 a start of 20 random trials left TPE two. There the random start also ends when two
fifths of the search's time has passed, whichever comes first. That time is the run's
:class:`search.budget.Budget`'s, which each attempt of a resumed run sets anew, so a resumed
run's random start keeps what was left of it.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler, TPESampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from search.budget import Budget, now

log = logging.getLogger(__name__)

STARTUP_FLOOR = 5  # a start ended by the clock still gives TPE this many finished trials, when the count allows


class StartupSampler(BaseSampler):
    """Random sampling until ``n_startup`` trials have finished or the ``budget``'s random start
    has ended (:meth:`search.budget.Budget.random_start_end`; never without one) with at least
    ``min(n_startup, STARTUP_FLOOR)`` finished; TPE after.

    The phase is decided once per trial, when the trial is created, so each trial's
    parameters come from one sampler. Finished counts complete and pruned trials, as TPE
    counts them (Tune reports a trial stopped by its scheduler as complete).
    """

    def __init__(self, *, n_startup: int, budget: Optional[Budget] = None, seed: Optional[int] = None,
                 **tpe_options: Any) -> None:
        self.n_startup = n_startup
        self.budget = budget
        self._tpe = TPESampler(seed=seed, n_startup_trials=0, **tpe_options)
        self._random = RandomSampler(seed=seed)
        self._random_trials: set[int] = set()  # trial numbers sampled at random
        self.ended_by: Optional[str] = None  # "trials" or "time", once TPE has taken over

    def random_phase(self, study: Study) -> bool:
        """Whether a trial created now is sampled at random (see the class)."""
        if self.ended_by is not None:
            return False
        finished = len(study._get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED),
                                         use_cache=True))
        if finished >= self.n_startup:
            self.ended_by = "trials"
        elif self.budget is not None and now() >= self.budget.random_start_end() \
                and finished >= min(self.n_startup, STARTUP_FLOOR):
            self.ended_by = "time"
        if self.ended_by is not None:
            log.info("random start over after %d finished trials (%s): TPE samples from here on", finished,
                     "its time is up" if self.ended_by == "time" else "the count")
        return self.ended_by is None

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        if self.random_phase(study):
            self._random_trials.add(trial.number)
        self._tpe.before_trial(study, trial)

    def _sampler(self, trial: FrozenTrial) -> BaseSampler:
        return self._random if trial.number in self._random_trials else self._tpe

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self._sampler(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return self._sampler(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._sampler(trial).sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState,
                    values: Optional[list[float]]) -> None:
        self._tpe.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._tpe.reseed_rng()
        self._random.reseed_rng()
