"""Routing: send each request to the provider that best fits it, by a weighted score.

The story: the candidates are the scenario's providers whose context window holds the
request (input + max_tokens) and whose expected quality on it meets the request's need
(`[traffic] min_quality`, judged by the quality model when the scenario has difficulty,
else by each model's quality score). Among them:
- "cheapest": the lowest expected cost;
- "fastest": the lowest typical latency (time to first token + output / speed);
- "quality_first": the highest expected quality (cheaper on a tie);
- "balanced": the highest score
      w_cost * (1 - norm(cost)) + w_latency * (1 - norm(latency))
      + w_reliability * (1 - error_rate) + w_quality * quality,
  where norm() rescales expected cost and typical latency to 0..1 across the candidates
  (min-max), while reliability and quality enter as they are (0..1, not rescaled); the
  weights depend on the request's priority (`weights` overrides them per priority).
When no provider meets the need, the best-quality one that fits is used (counted as unmet).

Default weights (cost, latency, reliability, quality; each row sums to 1):
    high:   0.20, 0.45, 0.10, 0.25   (leans to latency, and the only row that weighs reliability)
    normal: 0.40, 0.35, 0.00, 0.25
    low:    0.60, 0.10, 0.00, 0.30   (leans to cost)
tests/stages/test_router.py checks that these lines state DEFAULT_WEIGHTS.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lab.config import Table
from lab.quality import quality_curve
from lab.scenario import PRIORITIES
from lab.stages.base import Options, Stage

NAME = "router"
STRATEGIES = ("cheapest", "fastest", "balanced", "quality_first")
DEFAULT_WEIGHTS = {   # priority -> (cost, latency, reliability, quality)
    "high": (0.20, 0.45, 0.10, 0.25),
    "normal": (0.40, 0.35, 0.00, 0.25),
    "low": (0.60, 0.10, 0.00, 0.30),
}


@dataclass(frozen=True)
class Config(Options):
    stage: str = NAME
    strategy: str = "cheapest"
    weights: tuple[tuple[str, tuple[float, float, float, float]], ...] = tuple(DEFAULT_WEIGHTS.items())


def parse(t: Table) -> Config:
    weights = dict(DEFAULT_WEIGHTS)
    if t.has("weights"):
        wt = t.table("weights")
        for p in PRIORITIES:
            if wt.has(p):
                row = wt.table(p)
                weights[p] = tuple(row.number(k, 0.0, min=0.0) for k in ("cost", "latency", "reliability", "quality"))
                row.done()
        wt.done()
    return Config(strategy=t.string("strategy", Config.strategy, choices=STRATEGIES), weights=tuple(weights.items()))


class RouterStage(Stage):
    name = NAME

    def __init__(self, config: Config, sim, index: int, rng):
        super().__init__(config, sim, index, rng)
        self.providers = sim.providers
        self.prices = [sim.price_of(p) for p in self.providers]
        self.weights = dict(config.weights)
        self.context = np.array([pr.context_window or 10**9 for pr in self.prices])
        self.speed = np.array([p.info.tokens_per_s for p in self.providers])
        self.ttft_ms = np.array([p.info.ttft_ms for p in self.providers])
        self.reliability = np.array([1.0 - p.config.error_rate for p in self.providers])
        self.static_quality = np.array([p.info.quality for p in self.providers])
        self.routed = np.zeros(len(self.providers), dtype=np.int64)
        self.unmet = 0
        # every request's choice, decided up front in numpy blocks: the same rule as choose(i)
        self.choices, self.unmet_flags = self.choose_all()

    def expected(self, i: int):
        """(cost_usd, latency_ms, quality) per provider for request i."""
        req = self.sim.requests
        s = slice(i, i + 1)
        cost = np.array([float(p.cost_usd(req.input_tokens[s], req.output_tokens[s])[0]) for p in self.prices])
        latency = self.ttft_ms + req.output_tokens[i] * 1000.0 / self.speed
        qm = self.sim.quality_model
        quality = (np.array([qm.expected(p, i) for p in self.providers]) if qm is not None else self.static_quality)
        return cost, latency, quality

    def choose(self, i: int) -> int:
        req = self.sim.requests
        cost, latency, quality = self.expected(i)
        fits = self.context >= int(req.input_tokens[i]) + int(req.max_tokens[i])
        good = fits & (quality >= self.sim.scenario.traffic.min_quality - 1e-12)
        if not good.any():
            self.unmet += 1
            pool = np.flatnonzero(fits) if fits.any() else np.arange(len(self.providers))
            return int(pool[np.argmax(quality[pool])])
        pool = np.flatnonzero(good)
        strategy = self.config.strategy
        if strategy == "cheapest":
            return int(pool[np.lexsort((-quality[pool], cost[pool]))[0]])
        if strategy == "fastest":
            return int(pool[np.lexsort((cost[pool], latency[pool]))[0]])
        if strategy == "quality_first":
            return int(pool[np.lexsort((cost[pool], -quality[pool]))[0]])
        w_cost, w_lat, w_rel, w_q = self.weights[PRIORITIES[int(req.priority[i])]]

        def norm(x):
            span = x[pool].max() - x[pool].min()
            return (x[pool] - x[pool].min()) / span if span > 0 else np.zeros(len(pool))
        score = (w_cost * (1 - norm(cost)) + w_lat * (1 - norm(latency)) + w_rel * self.reliability[pool]
                 + w_q * quality[pool])
        return int(pool[int(np.argmax(score))])

    def choose_all(self, block: int = 1 << 17) -> tuple[list[int], np.ndarray]:
        """`choose(i)` for every request at once (vectorized over blocks of requests)."""
        req, n = self.sim.requests, len(self.sim.requests)
        out = np.zeros(n, dtype=np.int64)
        unmet = np.zeros(n, dtype=bool)
        for start in range(0, n, block):
            s = slice(start, min(start + block, n))
            out[s], unmet[s] = self._choose_block(req, s)
        return out.tolist(), unmet

    def _choose_block(self, req, s):
        inp, outp = req.input_tokens[s], req.output_tokens[s]
        cost = np.stack([p.cost_usd(inp, outp) for p in self.prices])                      # (K, m)
        latency = self.ttft_ms[:, None] + outp[None, :] * 1000.0 / self.speed[:, None]
        qm = self.sim.quality_model
        if qm is not None:
            quality = np.stack([quality_curve(p.info.quality, qm.difficulty[s]) for p in self.providers])
        else:
            quality = np.repeat(self.static_quality[:, None], len(inp), axis=1).astype(np.float64)
        fits = self.context[:, None] >= (inp.astype(np.int64) + req.max_tokens[s])[None, :]
        good = fits & (quality >= self.sim.scenario.traffic.min_quality - 1e-12)
        unmet = ~good.any(axis=0)
        fallback_pool = np.where(fits.any(axis=0)[None, :], fits, True)
        best_fallback = np.argmax(np.where(fallback_pool, quality, -np.inf), axis=0)

        def first_min(primary, secondary):
            """Among good providers, the smallest primary, ties to the smallest secondary."""
            p = np.where(good, primary, np.inf)
            tie = p == p.min(axis=0)
            return np.argmin(np.where(tie, secondary, np.inf), axis=0)

        strategy = self.config.strategy
        if strategy == "cheapest":
            pick = first_min(cost, -quality)
        elif strategy == "fastest":
            pick = first_min(latency, cost)
        elif strategy == "quality_first":
            pick = first_min(-quality, cost)
        else:
            weights = np.array([self.weights[p] for p in PRIORITIES])[req.priority[s]].T   # (4, m)

            def norm(x):
                lo = np.where(good, x, np.inf).min(axis=0)
                hi = np.where(good, x, -np.inf).max(axis=0)
                span = hi - lo
                return np.where(span > 0, (x - lo) / np.where(span > 0, span, 1.0), 0.0)
            score = (weights[0] * (1 - norm(cost)) + weights[1] * (1 - norm(latency))
                     + weights[2] * self.reliability[:, None] + weights[3] * quality)
            pick = np.argmax(np.where(good, score, -np.inf), axis=0)
        return np.where(unmet, best_fallback, pick), unmet

    def on_request(self, i: int) -> bool:
        k = self.choices[i]
        if self.unmet_flags[i]:
            self.unmet += 1
        self.routed[k] += 1
        self.sim.target[i] = k
        if k != 0:
            self.touch(i)
        return False

    def saved_usd(self, result) -> float:
        """Baseline cost minus the uncached price on the chosen model, for requests routed away."""
        run, base = result.run, result.baseline
        saved = 0.0
        for k, p in enumerate(self.prices):
            m = self.served_by(result, k)
            if m.any():
                saved += float(base.cost_usd[m].sum() - p.cost_usd(run.input_tokens[m], run.output_tokens[m]).sum())
        return saved

    def stats(self) -> dict:
        return {"strategy": self.config.strategy, "unmet_quality_need": self.unmet,
                "routed": {f"{p.name}/{p.model}": int(n) for p, n in zip(self.providers, self.routed)}}


Stage = RouterStage
