"""Throughput: costlab's simulator against a bare SimPy M/M/c loop on the same arrivals.

In one process and one run, for each size (200k and 1M requests):
  1. bare SimPy: a process per request (`Resource` + `Timeout`), the textbook M/M/c model;
  2. costlab, one run with no stages (the mock provider alone) on the same arrival and
     service times;
  3. costlab `simulate()` of a full pipeline (cache, dedup, prompt cache) plus its baseline,
     as `costlab run` does it, ledger included.
Prints requests/second of each, their ratios, the ledger's bytes per row, and finally one
JSON object with these figures. It measures; it asserts nothing.

    python benchmarks/throughput.py [--sizes 200000 1000000]
"""

from __future__ import annotations

import argparse
import gc
import json
import time

import numpy as np
import simpy

import lab
from lab.sim import Simulation
from lab.traffic import make_requests

CONCURRENCY = 64
RATE_PER_S = 50.0
MEAN_SERVICE_MS = 1000.0   # load = 50 / 64 = 0.78


def scenario(n: int, pipeline=()):
    return lab.scenario_from_dict({
        "name": "throughput-benchmark", "requests": n,
        "traffic": {"arrivals": {"process": "poisson", "rate_per_s": RATE_PER_S},
                    "prompts": {"catalog": 50_000, "popularity": {"dist": "zipf", "alpha": 0.9}},
                    "prefix": {"system_tokens": 1024}},
        "providers": [{"name": "openai", "model": "gpt-4o-mini", "concurrency": CONCURRENCY,
                       "latency_ms": {"dist": "exponential", "mean": MEAN_SERVICE_MS}}],
        "pipeline": list(pipeline),
    })


def bare_simpy(times: np.ndarray, service_s: np.ndarray, concurrency: int) -> np.ndarray:
    """The textbook SimPy M/M/c: one process per customer, a Resource and a Timeout."""
    env = simpy.Environment()
    slots = simpy.Resource(env, capacity=concurrency)
    waits = np.zeros(len(times))

    def customer(i):
        arrived = env.now
        with slots.request() as turn:
            yield turn
            waits[i] = env.now - arrived
            yield env.timeout(service_s[i])

    def source():
        for i in range(len(times)):
            delay = times[i] - env.now
            if delay > 0:
                yield env.timeout(delay)
            env.process(customer(i))

    env.process(source())
    env.run()
    return waits


def timed(fn):
    gc.collect()
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def measure(n: int) -> dict:
    plain = scenario(n)
    stream = make_requests(plain, np.random.default_rng(1), n)
    sim = Simulation(plain, stream, seed=1, optimized=False, progress=False)
    service_s = sim.providers[0].service_s.copy()

    bare_waits, bare_s = timed(lambda: bare_simpy(stream.t_arrival_s, service_s, CONCURRENCY))
    run, core_s = timed(sim.run_to_end)
    same_queue = bool(np.allclose(bare_waits * 1000, run.queue_ms, atol=1e-2))

    pipeline = [{"stage": "cache", "capacity": 5000}, {"stage": "dedup"}, {"stage": "prompt_cache", "rules": "openai"}]
    full = scenario(n, pipeline)
    result, full_s = timed(lambda: lab.simulate(full, seed=1, progress=False))
    ledger, ledger_s = timed(lambda: result.ledger)
    bytes_per_row = float(ledger.memory_usage(deep=True).sum() / len(ledger))
    return {
        "requests": n,
        "bare_simpy_req_per_s": n / bare_s,
        "costlab_core_req_per_s": n / core_s,
        "core_vs_bare_speedup": bare_s / core_s,
        "costlab_pipeline_with_baseline_req_per_s": n / (full_s + ledger_s),
        "pipeline_with_baseline_wall_s": full_s + ledger_s,
        "pipeline_vs_bare_wall_ratio": (full_s + ledger_s) / bare_s,
        "ledger_bytes_per_row": bytes_per_row,
        "queue_waits_identical_to_bare_simpy": same_queue,
        "cache_hit_rate": result.summary()["cache_hit_rate"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[200_000, 1_000_000])
    args = parser.parse_args()
    figures = []
    for n in args.sizes:
        f = measure(n)
        figures.append(f)
        print(f"{n:>9,} requests: bare SimPy {f['bare_simpy_req_per_s']:>9,.0f} req/s | costlab core "
              f"{f['costlab_core_req_per_s']:>9,.0f} req/s ({f['core_vs_bare_speedup']:.2f}x) | full pipeline + "
              f"baseline {f['pipeline_with_baseline_wall_s']:.1f} s ({f['pipeline_vs_bare_wall_ratio']:.2f}x bare wall) | "
              f"ledger {f['ledger_bytes_per_row']:.0f} B/row | same queue waits: {f['queue_waits_identical_to_bare_simpy']}",
              flush=True)
    print(json.dumps({"benchmark": "throughput", "concurrency": CONCURRENCY, "load": RATE_PER_S * MEAN_SERVICE_MS / 1000 / CONCURRENCY,
                      "results": figures}))


if __name__ == "__main__":
    main()
