"""The search's deadline: one file in the run folder that the searcher and a stopper read.

The driver writes ``budget.json`` at each attempt of a budgeted run, from the search time
already spent (``run.json``), so a resumed run goes on with what is left of its search
share and the time it stood still is not counted. The searcher (:mod:`search.searcher`)
starts no trial after the deadline; the stopper stops a running trial at its first result
after it; the sampler ends its random start at the file's ``random_until`` (:mod:`search.sampler`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

from ray.tune import Stopper

DEADLINE_FILE = "budget.json"


def write_deadline(run_dir: Path, deadline: Optional[float], random_until: Optional[float] = None) -> None:
    """Set the search's deadline and the random start's end (each a ``time.time()``; None: none)
    for the searcher, the stopper and the sampler."""
    from search.rundir import write_atomic

    write_atomic(run_dir / DEADLINE_FILE, json.dumps({"search_deadline": deadline, "random_until": random_until}))


def read_deadline(path: Path, key: str = "search_deadline") -> Optional[float]:
    """The time ``key`` in ``path``; None when there is none (or no file)."""
    try:
        return json.loads(path.read_text()).get(key)
    except (OSError, ValueError):
        return None


class DeadlineStopper(Stopper):
    """Stops a running trial at its first result after the deadline in ``deadline_file``.

    The trial keeps what it reported; it is recorded as stopped early, as ASHA's are."""

    def __init__(self, deadline_file: Path) -> None:
        self.deadline_file = deadline_file

    def __call__(self, trial_id: str, result: dict) -> bool:
        deadline = read_deadline(self.deadline_file)
        return deadline is not None and time.time() > deadline

    def stop_all(self) -> bool:
        return False
