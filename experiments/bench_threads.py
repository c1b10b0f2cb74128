"""Benchmark how a machine's cores are best spent: one trial on all of them, or a trial on each.

    python -m experiments.bench_threads --data ../shared/data/fer2013 --faces 4096

For each network (the seed's CNN, a 2-block 64-filter batch-norm net) it trains one epoch
over the first ``--faces`` training faces with the seed's augmentation, as FER Tune's
trials do (``fer_core.train.fit``), in two arrangements of the machine's ``--cpus``:
one process with ``cpus`` TensorFlow threads, and ``cpus`` processes of one thread each at
once. Printed: faces per second of the whole machine for each, and as the last line one
JSON object with them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

NETWORKS = {
    "seed_cnn": {},
    "bn_2x64": {"conv_blocks": 2, "base_filters": 64, "filter_growth": 1.0, "convs_per_block": 2,
                "batch_norm": True, "padding": "same"},
}


def one_epoch(data: str, faces: int, network: str, threads: int) -> float:
    """Seconds of one training epoch (after a warm-up of a few batches) in this process."""
    from fer_core.config import TrainConfig
    from fer_core.data import load
    from fer_core.splits import make_splits
    from fer_core.train import fit

    train = make_splits(load(data), "auto").train
    train = train.subset(list(range(min(faces, len(train)))))
    config = TrainConfig.from_dict({**NETWORKS[network], "epochs": 1, "normalize": "standardize"})
    fit(config, train.subset(list(range(64))), threads=threads)  # warm-up: imports, graph tracing
    clock = time.perf_counter()
    fit(config, train, threads=threads)
    return time.perf_counter() - clock


def arrangement(data: str, faces: int, network: str, processes: int, threads: int) -> float:
    """Faces per second of the machine with ``processes`` trainings of ``threads`` threads at once."""
    command = [sys.executable, "-m", "experiments.bench_threads", "--data", data, "--faces", str(faces),
               "--one", network, "--threads", str(threads)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    running = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) for _ in range(processes)]
    seconds = [float(p.communicate()[0].strip().splitlines()[-1]) for p in running]
    return processes * faces / max(seconds)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="synthetic:2000")
    parser.add_argument("--faces", type=int, default=4096, help="training faces an epoch (default 4096)")
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # a single timing, in a child process
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(one_epoch(args.data, args.faces, args.one, args.threads))
        return 0
    figures = {}
    for network in NETWORKS:
        together = arrangement(args.data, args.faces, network, 1, args.cpus)
        apart = arrangement(args.data, args.faces, network, args.cpus, 1)
        figures[network] = {f"1 trial x {args.cpus} threads": round(together, 1),
                            f"{args.cpus} trials x 1 thread": round(apart, 1)}
        print(f"{network}: one trial on {args.cpus} threads {together:.0f} faces/s; {args.cpus} one-thread trials "
              f"{apart:.0f} faces/s in all")
    print(json.dumps({"faces": args.faces, "cpus": args.cpus, "faces_per_second": figures}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
