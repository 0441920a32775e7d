"""Benchmark: batch throughput (series per minute) of `calcimg extract` on the demo set.

What it measures
----------------
The whole batch (`calcimg.batch.run_batch`: discovery, per-series load + segment + measure +
overlay, parts, merge, tables) on the phantom ``demo`` preset (5 studies, 8 series: 4 CT and 4
radiographs), three ways, in this process, rounds interleaving them:

(a) the local process pool, 1 worker;
(b) the local process pool, 2 workers;
(c) dask.distributed: a LocalCluster of 2 single-threaded worker processes on loopback, started
    before the timing (a cluster is long-lived; its start-up is printed separately). The local
    pool's start-up is inside (a) and (b), as it is in every run.

It checks that (b) and (c) write the same lesions.csv, and prints series/min per way (median of
the rounds), the speed-up of 2 workers over 1, and the dask overhead against the local pool,
``time(c) / time(b) - 1``, whose target is under 15 %.

Run
---
::

    .venv/bin/python benchmarks/bench_batch.py                   # demo set in a temp dir, 1 round
    .venv/bin/python benchmarks/bench_batch.py --data /tmp/demo --rounds 3

The last line printed is exactly
``series_per_min_1w=<a> series_per_min_2w=<b> series_per_min_dask2=<c> speedup_2w=<b/a> dask_overhead=<c time/b time - 1>``.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from calcimg.batch import run_batch
from calcimg.io import discover


def timed(data: Path, out: Path, **kwargs) -> float:
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    summary = run_batch([data], out, progress="quiet", **kwargs)
    seconds = time.perf_counter() - t0
    if summary.n_error:
        raise SystemExit(f"{summary.n_error} series failed; see {out}/series.csv")
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, help="demo set folder (written there when missing)")
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="calcimg-bench-batch-"))
    data = args.data or tmp / "demo"
    if not (data.is_dir() and any(data.iterdir())):
        from calcimg.phantom import generate

        print(f"writing the demo set to {data} ...", flush=True)
        generate(data, preset="demo", seed=0)
    n_series = len(discover([data]).series)
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs; {n_series} series in {data}")

    from distributed import LocalCluster

    t0 = time.perf_counter()
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=None, silence_logs=logging.ERROR)
    print(f"dask LocalCluster (2 workers) start-up: {time.perf_counter() - t0:.2f} s (not in the timings)")
    times: dict[str, list[float]] = {"1w": [], "2w": [], "dask2": []}
    try:
        for r in range(args.rounds):
            times["1w"].append(timed(data, tmp / "out1", workers=1))
            times["2w"].append(timed(data, tmp / "out2", workers=2))
            times["dask2"].append(timed(data, tmp / "outd", scheduler=cluster.scheduler_address))
            print(f"round {r + 1}: " + "  ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()), flush=True)
    finally:
        cluster.close()
    same = (tmp / "out2" / "lesions.csv").read_bytes() == (tmp / "outd" / "lesions.csv").read_bytes()
    print(f"local pool and dask lesions.csv identical: {same}")

    med = {k: statistics.median(v) for k, v in times.items()}
    rate = {k: n_series / v * 60 for k, v in med.items()}
    print(f"{'way':<28}{'seconds':>10}{'series/min':>12}")
    for k, label in (("1w", "local pool, 1 worker"), ("2w", "local pool, 2 workers"),
                     ("dask2", "dask LocalCluster, 2 workers")):
        print(f"{label:<28}{med[k]:>10.2f}{rate[k]:>12.1f}")
    speedup = med["1w"] / med["2w"]
    overhead = med["dask2"] / med["2w"] - 1
    print(f"2 workers / 1 worker speed-up: {speedup:.2f}x; dask overhead vs local pool: {overhead:+.1%} "
          f"(target < 15 %)")
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"series_per_min_1w={rate['1w']:.1f} series_per_min_2w={rate['2w']:.1f} "
          f"series_per_min_dask2={rate['dask2']:.1f} speedup_2w={speedup:.2f} dask_overhead={overhead:.3f}")
    if not same:
        raise SystemExit("local pool and dask outputs differ")


if __name__ == "__main__":
    main()
