"""The run's time budget: one object that plans ``--time-budget``, keeps its deadlines, and hands
each stage its share.

What is left of the budget after start-up (the data loaded, Ray started), less an allowance
for the export, is shared: :data:`search.settings.SEARCH_SHARE` for the search,
``CONFIRM_SHARE`` for the confirmation, ``FINAL_SHARE`` for the final model, which gets
what the other two left. The plan, the search time spent and the search's deadlines live
in the run folder's ``budget.json``, written and read by :class:`Budget` alone, so a
resumed run goes on with what is left of its shares and the Tune-side readers (sampler,
searcher, stopper, progress line), which Tune restores from its own saved state, see the
deadlines of the current attempt; the confirmation's seconds and the final stage's are kept
there too, the latter once planned, so a resumed final stage is the one its first attempt
planned. A run without a budget has deadlines at infinity: every
stage asks the same questions and gets "no limit". One clock throughout: ``time.time()``,
which a resumed run and Ray's processes share.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from fer_core.config import TrainConfig
from fer_core.errors import ConfigError
from fer_core.staging import write_atomic
from search.rundir import read_state
from search.settings import CONFIRM_SHARE, FINAL_SHARE, SEARCH_SHARE, STARTUP_SHARE

BUDGET_FILE = "budget.json"
EXPORT_ALLOWANCE_S = 30.0  # export, TensorBoard's final run and the report: ~13 s on the synthetic faces
# a training task's cost beyond its epochs (worker start, model build, graph tracing, scoring):
# 37 s for 2 short retrains on 2 busy cores; the confirmation's folds and the final retrains alike
TASK_OVERHEAD_S = 12.0
RAY_START_S = 5.0  # starting a local Ray cluster on 2 cores: 2-4 s, counted before it starts
MIN_SEARCH_S = 10.0  # the least search worth starting: one small trial's first epochs on one core


def now() -> float:
    """The run's one clock: seconds since the epoch, the same in every process and after a resume."""
    return time.time()


@dataclass(frozen=True)
class BudgetPlan:
    """Seconds of the budget for each stage, planned once, when the run starts."""

    total_s: float
    startup_s: float
    search_s: float
    confirm_s: float
    final_s: float

    @classmethod
    def of(cls, total_s: float, startup_s: float, confirm: bool) -> "BudgetPlan":
        """Share what ``total_s`` leaves after ``startup_s`` and the export's allowance; with no
        confirmation its share goes to the search."""
        usable = max(0.0, total_s - startup_s - EXPORT_ALLOWANCE_S)
        search = SEARCH_SHARE + (0.0 if confirm else CONFIRM_SHARE)
        return cls(total_s, startup_s, usable * search, usable * CONFIRM_SHARE if confirm else 0.0,
                   usable * FINAL_SHARE)

    def to_json(self) -> dict[str, float]:
        """Rounded seconds, for ``budget.json`` and the report."""
        return {k: round(v, 1) for k, v in asdict(self).items()}


def check_budget(total_s: Optional[float], startup_s: float, confirm: bool) -> None:
    """Refuse, before Ray starts, a budget whose search share could not hold :data:`MIN_SEARCH_S`
    after ``startup_s`` seconds of start-up (Ray's included), naming the least one that would."""
    if total_s is None or BudgetPlan.of(total_s, startup_s, confirm).search_s >= MIN_SEARCH_S:
        return
    share = SEARCH_SHARE + (0.0 if confirm else CONFIRM_SHARE)
    least = math.ceil(startup_s + EXPORT_ALLOWANCE_S + MIN_SEARCH_S / share)
    raise ConfigError(f"--time-budget {total_s:g}s: too short to train one trial after a start-up of about "
                      f"{startup_s:.0f} s and the export's {EXPORT_ALLOWANCE_S:.0f} s; expected at least {least}s")


class Budget:
    """A run's time budget, kept in ``run_dir/budget.json``.

    Make one with :meth:`plan` when a run starts and :meth:`load` when it resumes; the
    stages then ask it for their deadlines: :meth:`start_search` (once per attempt) sets the
    search's, :meth:`search_deadline` and :meth:`random_start_end` read it back (from any
    process that holds this object, a pickled copy included), :meth:`confirm_deadline` and
    :meth:`final_seconds` (after :meth:`note_confirm_time`) size the stages after the search.
    Unbounded, each answers infinity.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / BUDGET_FILE

    # ------------------------------------------------------------------ making one
    @classmethod
    def plan(cls, run_dir: Path, total_s: Optional[float], startup_s: float, confirm: bool) -> "Budget":
        """A new run's budget: ``total_s`` (None: no bound) shared after ``startup_s`` seconds of start-up."""
        plan = BudgetPlan.of(total_s, startup_s, confirm) if total_s is not None else None
        budget = cls(run_dir)
        budget._write({"plan": plan.to_json() if plan else None, "search_spent_s": 0.0})
        return budget

    @classmethod
    def search_only(cls, run_dir: Path, search_s: float) -> "Budget":
        """A budget of ``search_s`` seconds for a search alone (a harness calling that stage)."""
        budget = cls(run_dir)
        budget._write({"plan": BudgetPlan(search_s, 0.0, search_s, 0.0, 0.0).to_json(), "search_spent_s": 0.0})
        return budget

    @classmethod
    def load(cls, run_dir: Path) -> "Budget":
        """The budget a run saved, to resume it. A run saved before ``budget.json`` kept its plan and
        search time in ``run.json``: they are taken from there once."""
        budget = cls(run_dir)
        if not budget.path.is_file():
            state = read_state(run_dir)
            budget._write({"plan": state.get("plan"), "search_spent_s": float(state.get("search_seconds", 0.0))})
        return budget

    # ------------------------------------------------------------------ the plan
    @property
    def shares(self) -> Optional[BudgetPlan]:
        """The stages' seconds; None without a bound."""
        plan = self._read().get("plan")
        return BudgetPlan(**plan) if plan else None

    @property
    def total_s(self) -> Optional[float]:
        """The whole run's seconds; None without a bound."""
        plan = self.shares
        return plan.total_s if plan else None

    @property
    def search_spent_s(self) -> float:
        """Search seconds spent by this run's attempts so far."""
        return float(self._read().get("search_spent_s", 0.0))

    # ------------------------------------------------------------------ the search
    def start_search(self) -> float:
        """Set this attempt's search deadline from what its earlier attempts left, and the random
        start's end (the share's first :data:`search.settings.STARTUP_SHARE`); return the seconds
        the search has (infinity without a bound)."""
        shares, spent, start = self.shares, self.search_spent_s, now()
        left = max(0.0, shares.search_s - spent) if shares else math.inf
        random_left = max(0.0, left - (1 - STARTUP_SHARE) * shares.search_s) if shares else math.inf
        self._update(search_before_s=spent, search_started=start,
                     search_deadline=start + left if shares else None,
                     random_until=start + random_left if shares else None)
        return left

    def note_search_time(self) -> float:
        """Save the search seconds spent so far (this attempt's and its predecessors'), so that a run
        killed now resumes with the rest; return them."""
        state = self._read()
        spent = float(state.get("search_before_s", 0.0)) + now() - float(state.get("search_started", now()))
        self._update(search_spent_s=spent)
        return spent

    def search_deadline(self) -> float:
        """When the search must start no trial and stop the running ones; infinity without a bound."""
        deadline = self._read().get("search_deadline")
        return math.inf if deadline is None else float(deadline)

    def random_start_end(self) -> float:
        """When the sampler's random start ends by the clock; infinity without a bound."""
        until = self._read().get("random_until")
        return math.inf if until is None else float(until)

    def search_over(self) -> bool:
        """Whether the search's deadline has passed."""
        return now() >= self.search_deadline()

    # ------------------------------------------------------------------ after the search
    def after_search_s(self) -> float:
        """The planned seconds of the stages after the search (0 without a bound)."""
        shares = self.shares
        return shares.confirm_s + shares.final_s if shares else 0.0

    def confirm_deadline(self) -> float:
        """The confirmation's deadline when it starts now: its share from now; infinity without a bound."""
        plan = self.shares
        return now() + plan.confirm_s if plan else math.inf

    def note_confirm_time(self, seconds: float) -> None:
        """Add ``seconds`` spent confirming (one attempt's, finished or interrupted) to the run's total."""
        self._update(confirm_spent_s=float(self._read().get("confirm_spent_s", 0.0)) + seconds)

    def final_seconds(self) -> float:
        """The final stage's seconds: what the three stages' shares leave after the search and the
        confirmation spent theirs over the run's attempts. A confirmation skipped or cut short leaves
        its time to the final model; a search that overran (a trial stops at its next epoch) takes it
        from there. Planned once and kept: a resumed run gets the same seconds, so its final stage is
        planned as its first attempt's was and its trainings find the states they saved
        (:func:`search.final.retrain.checkpoint_folder` is named by the planned config)."""
        plan = self.shares
        if plan is None:
            return math.inf
        return self._kept("final_s", lambda state: max(0.0, plan.search_s + plan.confirm_s + plan.final_s
                                                      - float(state.get("search_spent_s", 0.0))
                                                      - float(state.get("confirm_spent_s", 0.0))))

    def seed_pace(self, measure: Callable[[], float]) -> float:
        """The seed's CNN's faces a second on this machine, ``measure``d once per run and kept: a resumed
        run plans from the same pace, so it picks the configs and lengths its first attempt picked and
        their trainings find their saved states."""
        return self._kept("seed_faces_per_s", lambda state: measure())

    # ------------------------------------------------------------------ its file
    def _read(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def _kept(self, key: str, compute: Callable[[dict[str, Any]], float]) -> float:
        """``key``'s value in the file, computed from the file's state and saved the first time it is asked."""
        state = self._read()
        if state.get(key) is None:
            state[key] = float(compute(state))
            self._write(state)
        return float(state[key])

    def _update(self, **values: Any) -> None:
        self._write(self._read() | values)

    def _write(self, state: dict[str, Any]) -> None:
        write_atomic(self.path, json.dumps(state, indent=2))


def training_seconds(config: TrainConfig, n_train: int, per_image_s: float) -> float:
    """Seconds ``config`` trains on ``n_train`` faces at ``per_image_s`` a face
    (:meth:`search.records.TrialRecord.image_seconds`)."""
    return config.epochs * config.images_per_epoch(n_train) * per_image_s


def makespan(durations: list[float], slots: int) -> float:
    """Seconds until ``durations`` end when they start in order, ``slots`` at a time (as Ray runs tasks)."""
    free = [0.0] * max(1, slots)
    for duration in durations:
        free.sort()
        free[0] += duration
    return max(free)
