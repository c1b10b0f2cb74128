"""FER Tune's search: Ray Tune + Optuna + ASHA around :mod:`fer_core`. Run ``python -m search.run``.

The package is laid out as the run goes:

* the run's bookkeeping: :mod:`search.cli` (the command line), :mod:`search.settings` (every
  setting, once), :mod:`search.budget` (the time budget), :mod:`search.rundir` (the run
  folder), :mod:`search.cluster` (Ray), :mod:`search.records` (what the stages hand each other);
* :mod:`search.tuning`: the search (space, sampler, searcher, scheduler, trainable, Tune's wiring);
* :mod:`search.final`: after the search (confirmation, ranking, the final model's retrains);
* :mod:`search.report`: the report, its plots and TensorBoard's final run;
* :mod:`search.pipeline`: the stages as functions, which :mod:`search.run` calls in order;
  :mod:`search.folds`: the same stages once per outer fold (``--folds``), pooled.

The names below are the public surface that the experiments and other callers use; each
resolves on first use, so ``import search`` loads neither Ray nor TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "search.budget": ("Budget", "BudgetPlan", "TASK_OVERHEAD_S", "makespan", "training_seconds"),
    "search.cli": ("Command", "build_parser", "check_args", "flag_table", "parse", "parse_duration", "run_settings"),
    "search.cluster": ("cluster_slots", "start_ray"),
    "search.final.confirm": ("confirm", "confirm_leaders", "folds_of"),
    "search.final.ranking": ("pick_best", "pick_ensemble", "pick_members"),
    "search.final.retrain": ("final_networks", "plan_final", "retrain_members"),
    "search.final.tasks": ("train_and_score",),
    "search.pipeline": ("build_and_export", "confirm_trials", "final_members", "finish", "load_and_split",
                        "open_run", "plan_final_stage", "search_trials"),
    "search.folds": ("run_folds",),
    "search.records": ("Confirmation", "FinalModel", "Finished", "FoldRecord", "FoldsReport", "Member", "Report",
                       "TrialRecord"),
    "search.report.build": ("build_report", "write_report"),
    "search.rundir": ("TUNE_DIR", "check_writable", "output_path"),
    "search.settings": ("CONFIRM_SHARE", "DEFAULT_MAX_EPOCHS", "FLAGS", "LARGE_DATA", "SEARCH_SHARE",
                        "ConfirmSettings", "FinalSettings", "Resources", "RunSettings", "SearchSettings", "is_large"),
    "search.tuning.searcher": ("BudgetedOptunaSearch",),
    "search.tuning.space": ("define_space", "seed_point", "to_config"),
    "search.tuning.stopper": ("DeadlineStopper",),
    "search.tuning.trials": ("trial_record",),
    "search.tuning.tuner": ("make_tuner", "trial_trainable"),
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'search' has no attribute {name!r}")
    value = getattr(importlib.import_module(_MODULE_OF[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
