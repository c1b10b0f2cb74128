"""Benchmark data loading: the first load of an image folder (decoding) and a cached load.

    python -m experiments.bench_load                      # FER2013 from $FER_TUNE_FER2013 or ../shared/data/fer2013
    python -m experiments.bench_load --data ../shared/data/ck48 --faces none

The first load runs against an empty cache folder made for this run (so it decodes every
image; the operating system's file cache may already hold the files, as it would on a
second run of a search), the second against the entry the first wrote. It also times the
protocol's splits of the loaded data. At the end it prints the figures, and as its last
line one JSON object with all of them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from fer_core import CACHE_ENV

ROOT = Path(__file__).resolve().parents[1]
FER2013_ENV = "FER_TUNE_FER2013"  # where the tests and CI find FER2013's image folders


def _default_data() -> str:
    return os.environ.get(FER2013_ENV) or str(ROOT.parent / "shared" / "data" / "fer2013")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=_default_data(), help="an image folder or manifest (default: FER2013)")
    parser.add_argument("--faces", default="auto", choices=("auto", "crop", "none"))
    args = parser.parse_args(argv)
    if not Path(args.data).exists():
        print(f"bench_load: {args.data} not found; set {FER2013_ENV} or pass --data", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")

    from fer_core import load, make_splits

    cache = Path(tempfile.mkdtemp(prefix="fer_tune_bench_cache_"))
    os.environ[CACHE_ENV] = str(cache)
    try:
        start = time.perf_counter()
        data = load(args.data, faces=args.faces)
        first = time.perf_counter() - start
        start = time.perf_counter()
        again = load(args.data, faces=args.faces)
        cached = time.perf_counter() - start
        entry_mib = sum(f.stat().st_size for f in cache.iterdir()) / 2**20
        start = time.perf_counter()
        splits = make_splits(again, "auto")
        split_s = time.perf_counter() - start
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    same = bool((data.images == again.images).all() and (data.labels == again.labels).all())
    figures = {"data": args.data, "faces": args.faces, "images": len(data), "cpus": os.cpu_count(),
               "first_load_s": round(first, 2), "cached_load_s": round(cached, 2),
               "cache_entry_mib": round(entry_mib, 1), "cached_equals_first": same,
               "split": splits.method, "train": len(splits.train), "val": len(splits.val),
               "test": len(splits.test), "split_s": round(split_s, 2),
               "faces_report": data.faces.describe() if data.faces else None}
    print(f"{len(data)} images from {args.data} on {os.cpu_count()} CPUs: first load {first:.1f} s "
          f"({1e6 * first / len(data):.0f} us an image), cached load {cached:.1f} s "
          f"(cache entry {entry_mib:.0f} MiB, identical: {same})")
    print(f"splits ({splits.method}): {len(splits.train)} train / {len(splits.val)} val / "
          f"{len(splits.test)} test in {split_s:.1f} s")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
