"""What-if runs that share their baseline: 10 policies x 5 seeds, with and without sharing, in one run.

`lab.twin.what_if` replays one scenario (support-chatbot) under 10 pipelines on the same 5 seeds.
Every policy sees the same request streams, so the stream and the no-optimization baseline of
each seed are the same 5 objects, whoever asks; `lab.sim.BASELINES` computes each once. Timed
back to back, alternately, `--repeat` times: every baseline afresh (`BASELINES.disabled()`: 50
streams and baselines) and shared (5). Also checks both give the same table. Prints the figures,
then one JSON object. It measures; it asserts nothing.

    python benchmarks/whatif.py [--requests 20000] [--seeds 5] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import lab
from lab.sim import BASELINES
from lab.twin import what_if

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "support-chatbot.toml"
POLICIES = {
    "cache 100": [{"stage": "cache", "capacity": 100}],
    "cache 1000": [{"stage": "cache", "capacity": 1000}],
    "cache 10000": [{"stage": "cache", "capacity": 10000}],
    "cache 1000 lfu": [{"stage": "cache", "capacity": 1000, "policy": "lfu"}],
    "cache 1000 ttl 60 s": [{"stage": "cache", "capacity": 1000, "ttl_s": 60}],
    "dedup": [{"stage": "dedup"}],
    "cache + dedup": [{"stage": "cache", "capacity": 1000}, {"stage": "dedup"}],
    "prompt cache": [{"stage": "prompt_cache", "rules": "openai"}],
    "cache + prompt cache": [{"stage": "cache", "capacity": 1000}, {"stage": "prompt_cache", "rules": "openai"}],
    "all three": [{"stage": "cache", "capacity": 1000}, {"stage": "dedup"},
                  {"stage": "prompt_cache", "rules": "openai"}],
}


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    twin = lab.load_scenario(SCENARIO)
    lab.simulate(twin, seed=0, requests=1000, progress=False)        # warm imports and price tables
    fresh_times, shared_times, baselines_computed = [], [], 0
    for _ in range(max(1, args.repeat)):
        with BASELINES.disabled():
            fresh, s = timed(lambda: what_if(twin, POLICIES, seeds=args.seeds, requests=args.requests))
        fresh_times.append(s)
        BASELINES.clear()
        shared, s = timed(lambda: what_if(twin, POLICIES, seeds=args.seeds, requests=args.requests))
        shared_times.append(s)
        baselines_computed = BASELINES.misses
    fresh_s, shared_s = min(fresh_times), min(shared_times)
    runs = len(fresh.runs) * args.seeds
    same = fresh.table.equals(shared.table)
    print(f"what_if: {len(fresh.runs)} policies (with 'none') x {args.seeds} seeds x {args.requests:,} requests")
    print(f"  every baseline afresh  {fresh_s:7.2f} s   ({runs} streams + baselines; runs "
          f"{', '.join(f'{t:.2f}' for t in fresh_times)})")
    print(f"  baselines shared       {shared_s:7.2f} s   ({baselines_computed} streams + baselines; runs "
          f"{', '.join(f'{t:.2f}' for t in shared_times)})")
    print(f"  saving {100 * (1 - shared_s / fresh_s):.1f} % of the wall time ({fresh_s / shared_s:.2f}x); "
          f"identical tables: {same}")
    print(json.dumps({"benchmark": "whatif", "policies": len(fresh.runs), "seeds": args.seeds,
                      "requests_per_run": args.requests, "runs": runs, "fresh_s": fresh_s, "shared_s": shared_s,
                      "fresh_runs_s": fresh_times, "shared_runs_s": shared_times,
                      "baselines_computed_fresh": runs, "baselines_computed_shared": baselines_computed,
                      "saving_pct": 100 * (1 - shared_s / fresh_s), "speedup": fresh_s / shared_s,
                      "identical": bool(same)}))


if __name__ == "__main__":
    main()
