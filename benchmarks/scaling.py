"""How cost grows: 10k, 100k and 1M requests of three library scenarios, time per request at each.

Each point is one `lab.simulate` (the run and its baseline, shared-baseline cache emptied first)
plus `Result.ledger`, in this process, smallest first. Time per request should stay flat: the
engine is a loop over requests with O(1) (or O(log c)) work each. Prints a table, then one JSON
object. It measures; it asserts nothing.

    python benchmarks/scaling.py [--sizes 10000,100000,1000000] [--scenarios a,b,c]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import lab
from lab.sim import BASELINES

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
DEFAULT = ("support-chatbot", "bursty-social-feed", "llm-gateway")


def time_point(scenario, n: int) -> float:
    BASELINES.clear()
    start = time.perf_counter()
    result = lab.simulate(scenario, seed=0, requests=n, progress=False)
    _ = result.ledger                              # built, as a user reading it would
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--scenarios", default=",".join(DEFAULT))
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    names = args.scenarios.split(",")
    rows = []
    print(f"{'scenario':28s}" + "".join(f"{n:>14,}" for n in sizes) + "   (microseconds per request)")
    for name in names:
        scenario = lab.load_scenario(SCENARIOS / f"{name}.toml")
        lab.simulate(scenario, seed=0, requests=1000, progress=False)      # warm imports and price tables
        us = {}
        for n in sizes:
            us[n] = 1e6 * time_point(scenario, n) / n
        rows.append({"scenario": name, "us_per_request": {str(n): us[n] for n in sizes},
                     "growth_largest_vs_smallest": us[sizes[-1]] / us[sizes[0]]})
        print(f"{name:28s}" + "".join(f"{us[n]:14.2f}" for n in sizes)
              + f"   x{us[sizes[-1]] / us[sizes[0]]:.2f} from {sizes[0]:,} to {sizes[-1]:,}")
    print(json.dumps({"benchmark": "scaling", "sizes": sizes, "scenarios": rows}))


if __name__ == "__main__":
    main()
