"""The Ray cluster a run uses: joined or started, with the settings every worker needs, and its size.

Ray is imported here only when :func:`start_ray` runs: it reads ``RAY_AUTH_MODE`` once, when
it is imported, and the mode depends on whether a cluster address was given.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from typing import Optional

from fer_core.errors import FerInputError
from search.settings import Resources

TRIAL_STOP_WAIT_S = 600  # longest epoch a stopped trial may finish before its worker is reused
EXPERIMENT_SAVE_PERIOD_S = "2"  # how often Tune saves its state: a killed driver loses at most this much


def check_address(address: str) -> None:
    """Fail fast, with one line, when nothing answers at a cluster address."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if address == "auto" or not port.isdigit():
        return  # let Ray resolve it (and say what is wrong)
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=10):
            pass
    except (OSError, ValueError):
        raise FerInputError(f"--address {address}: no Ray cluster answers there "
                            "(expected HOST:PORT of a running 'ray start --head')") from None


def start_ray(address: Optional[str], resources: Resources = Resources()) -> int:
    """Join the cluster at ``address``, or start a local one, with the settings every worker needs;
    return how many trials of ``resources`` it runs at once (:func:`cluster_slots`)."""
    env = {"TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore",
           # a trial that ASHA stops finishes its current epoch before its worker takes the next
           # trial; Tune's default 2 s wait fails the reuse, and with it the next trial
           "TUNE_FUNCTION_THREAD_TIMEOUT_S": str(TRIAL_STOP_WAIT_S)}
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", EXPERIMENT_SAVE_PERIOD_S)
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # CSV/JSON are added by hand, TBX not at all
    # a trial's checkpoint (num_to_keep=1) forces a state snapshot: intended, not a warning
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the classic one-row-per-trial table
    if not address and "ray" not in sys.modules:
        # a local cluster keeps Ray's default, token authentication; saying so outright skips Ray's
        # notice of it. Ray reads the mode once, when it is imported: in a process that imported it
        # already (a harness starting Ray again), Ray's own default applies.
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    import ray

    ray.init(address=address or "local", include_dashboard=False, logging_level=logging.WARNING,
             runtime_env={"env_vars": env}, ignore_reinit_error=True)
    return cluster_slots(resources)


def cluster_slots(resources: Resources) -> int:
    """Trials at once on this cluster: its CPUs over a trial's."""
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1) // resources.cpus))
