"""Replay a finished search's trials through early-stopping rules, to compare what they cost.

    python -m experiments.replay_pruning runs/NAME/report.json

Every trial's per-epoch validation history is in the run's report. The trials are fed,
in the order they started, to Ray's ASHA bracket and to FER Tune's
:class:`search.scheduler.RecentASHAScheduler` bracket, with several windows and keep
shares; each rule's row says how many epochs and trial-seconds the search would have
spent, and which of the run's best full-length trials it would still have let finish.

A replay, not a new search: the sampler would have proposed other trials after a
different stop, and a trial that the run stopped earlier than a rule would has no
history past that point (it is counted as stopped there, under ``truncated``). It
answers how strict a rule is on the trials a real search proposes, in seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

from ray.tune.schedulers import TrialScheduler
from ray.tune.schedulers.async_hyperband import _Bracket

from search.run import DEFAULT_ENSEMBLE
from search.scheduler import _RecentBracket

TOP = DEFAULT_ENSEMBLE  # the final model's members: the best full-length trials a rule must not lose
ALL = 10**9  # a window longer than any search: every trial that reached the rung


def replay(trials: list[dict], metric: str, max_t: int, grace: int, rf: float, window: Optional[int],
           keep: Optional[float]) -> dict:
    """Feed ``trials`` (report records) epoch by epoch to one bracket; what it would cost."""
    if window is None:
        bracket = _Bracket(grace, max_t, rf, s=0)
    else:
        bracket = _RecentBracket(grace, max_t, rf, s=0, window=window, keep=keep)
    epochs = seconds = truncated = 0
    finished = []
    for record in trials:
        history = record["history"]
        if not history:
            continue
        trial = SimpleNamespace(trial_id=record["trial_id"])
        ran = len(history)
        for epoch, row in enumerate(history, start=1):
            if bracket.on_result(trial, epoch, row[metric]) == TrialScheduler.STOP:
                ran = epoch
                break
        else:
            truncated += len(history) < max_t and record["status"] == "stopped_early"
        epochs += ran
        seconds += sum(row["train_seconds"] + row["val_seconds"] for row in history[:ran])
        if ran >= max_t:
            finished.append((history[-1][metric], record["trial_id"]))
    return {"epochs": epochs, "trial_seconds": seconds, "finished": len(finished), "truncated": truncated,
            "finished_ids": {trial_id for _, trial_id in finished}}


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.replay_pruning", description=__doc__.split("\n")[0])
    p.add_argument("report", help="a run's report.json")
    args = p.parse_args(argv)
    try:
        report = json.loads(Path(args.report).read_text())
        trials, metric, max_t = report["trials"], report["metric"], report["max_epochs"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        print(f"replay_pruning: {args.report}: not a search.run report ({exc})", file=sys.stderr)
        return 2
    grace = max(1, round(max_t * 0.2))
    actual = [t for t in trials if t["status"] == "completed"]
    best = sorted(actual, key=lambda t: t["final_metric"], reverse=True)[:TOP]
    print(f"{args.report}: {len(trials)} trials, {sum(len(t['history']) for t in trials)} epochs run; "
          f"best full-length trials {', '.join(t['trial_id'] for t in best)}")
    print(f"{'rule':<34} {'epochs':>6} {'trial-s':>8} {'finished':>8} {'truncated':>9}  kept best {TOP}")
    # the rungs stay Ray's (grace, grace * 3, ...); the rules differ in whom a trial is judged against
    rules = [("ASHA (Ray), all trials, keep 1/3", None, None), ("all trials, keep 1/4", ALL, 0.25)]
    rules += [(f"last {w} trials, keep {k:.2f}", w, k) for w in (6, 9, 12) for k in (1 / 3, 0.25)]
    for name, window, keep in rules:
        row = replay(trials, metric, max_t, grace, 3, window, keep)
        kept = sum(t["trial_id"] in row["finished_ids"] for t in best)
        print(f"{name:<34} {row['epochs']:>6} {row['trial_seconds']:>8.0f} {row['finished']:>8} "
              f"{row['truncated']:>9}  {kept}/{len(best)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
