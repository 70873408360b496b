"""Sweep speedup: the same `lab.sweep` on 2 workers against 1, in one run.

A grid of 3 cache capacities x 2 arrival rates on the support-chatbot scenario, 4 seeds each
(24 independent runs of --requests requests), on 1 worker and on 2, alternately, --repeat times
(best of each: the machine's other load only ever slows a run down): local processes by default, or a Dask LocalCluster of 1 and 2 single-threaded worker processes with --dask (cluster
start-up excluded, it happens once per session). Bars (issue 16): 2 workers at least 1.9x faster
than 1 on local processes, 1.8x on Dask. Also checks that both give identical numbers. Prints the figures, then one JSON object.

    python benchmarks/sweep.py [--requests 20000] [--seeds 4] [--repeat 3] [--dask]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import lab
from lab.sweep import sweep_runs

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "support-chatbot.toml"
GRID = {"pipeline[cache].capacity": [100, 1000, 10000], "traffic.arrivals.rate_per_s": [10.0, 40.0]}
BAR_SPEEDUP = {"processes": 1.9, "dask": 1.8}


def timed_sweep(seeds: int, requests: int, workers: int, dask: bool):
    """(runs, wall seconds) of one sweep on `workers` workers."""
    if not dask:
        start = time.perf_counter()
        runs = sweep_runs(SCENARIO, GRID, seeds=seeds, requests=requests, workers=workers, progress=False)
        return runs, time.perf_counter() - start
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        client.run(lambda: __import__("lab.sim"))             # warm the workers' imports, as a live cluster is
        start = time.perf_counter()
        runs = sweep_runs(SCENARIO, GRID, seeds=seeds, requests=requests, client=client, progress=False)
        return runs, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000, help="requests per run (default 20,000)")
    parser.add_argument("--seeds", type=int, default=4, help="seeds per grid point (default 4)")
    parser.add_argument("--repeat", type=int, default=3, help="timings of each, best taken (default 3)")
    parser.add_argument("--dask", action="store_true", help="Dask LocalCluster workers instead of local processes")
    args = parser.parse_args()
    lab.simulate(lab.load_scenario(SCENARIO), seed=0, requests=1000, progress=False)   # warm caches in the parent
    one_times, two_times = [], []
    for _ in range(max(1, args.repeat)):
        one, s = timed_sweep(args.seeds, args.requests, 1, args.dask)
        one_times.append(s)
        two, s = timed_sweep(args.seeds, args.requests, 2, args.dask)
        two_times.append(s)
    one_s, two_s = min(one_times), min(two_times)
    runs = len(one)
    speedup = one_s / two_s
    bar = BAR_SPEEDUP["dask" if args.dask else "processes"]
    backend = "Dask LocalCluster processes" if args.dask else "local processes (ProcessPoolExecutor)"
    print(f"sweep of {runs} runs x {args.requests:,} requests on {backend}, {os.cpu_count()} cores")
    print(f"  1 worker   {one_s:7.2f} s   (best of {', '.join(f'{t:.2f}' for t in one_times)})")
    print(f"  2 workers  {two_s:7.2f} s   (best of {', '.join(f'{t:.2f}' for t in two_times)})")
    print(f"  speedup {speedup:.2f}x   (bar >= {bar}x: {'met' if speedup >= bar else 'MISSED'})")
    print(f"  identical numbers on 1 and 2 workers: {one.equals(two)}")
    print(json.dumps({"benchmark": "sweep", "backend": "dask" if args.dask else "processes", "runs": runs,
                      "requests_per_run": args.requests, "cores": os.cpu_count(), "one_worker_s": one_s,
                      "two_workers_s": two_s, "one_worker_runs_s": one_times,
                      "two_workers_runs_s": two_times, "speedup": speedup, "bar_speedup": bar,
                      "meets": speedup >= bar, "identical": bool(one.equals(two))}))


if __name__ == "__main__":
    main()
