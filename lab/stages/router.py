"""Routing: send each request to the provider that best fits it, by a weighted score.

The story: the candidates are the scenario's providers whose context window holds the
request (input + max_tokens) and whose expected quality on it meets the request's need
(`[traffic] min_quality`, judged by the quality model when the scenario has difficulty,
else by each model's quality score). Among them:
- "cheapest": the lowest expected cost;
- "fastest": the lowest typical latency (time to first token + output / speed);
- "quality_first": the highest expected quality (cheaper on a tie);
- "balanced": the highest weighted score over cost, latency, reliability and quality, each
  normalised across candidates, with weights that depend on the request's priority.
When no provider meets the need, the best-quality one that fits is used (counted as unmet).

Default weights (costlab's documented defaults, cost/latency/quality 0.4/0.35/0.25 with
reliability folded into latency as in the seed design; high priority leans to latency and
quality, low priority to cost):
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lab.config import Table
from lab.stages import Stage

NAME = "router"
STRATEGIES = ("cheapest", "fastest", "balanced", "quality_first")
DEFAULT_WEIGHTS = {   # priority -> (cost, latency, reliability, quality)
    "high": (0.20, 0.45, 0.10, 0.25),
    "normal": (0.40, 0.35, 0.00, 0.25),
    "low": (0.60, 0.10, 0.00, 0.30),
}
PRIORITY_NAMES = ("high", "normal", "low")
__doc__ += "\n".join(f"    {p}: cost {w[0]}, latency {w[1]}, reliability {w[2]}, quality {w[3]}"
                     for p, w in DEFAULT_WEIGHTS.items())


@dataclass(frozen=True)
class Config:
    stage: str = NAME
    strategy: str = "cheapest"
    weights: tuple[tuple[str, tuple[float, float, float, float]], ...] = tuple(DEFAULT_WEIGHTS.items())


def parse(t: Table) -> Config:
    weights = dict(DEFAULT_WEIGHTS)
    if t.has("weights"):
        wt = t.table("weights")
        for p in PRIORITY_NAMES:
            if wt.has(p):
                row = wt.table(p)
                weights[p] = tuple(row.number(k, 0.0, min=0.0) for k in ("cost", "latency", "reliability", "quality"))
                row.done()
        wt.done()
    return Config(strategy=t.string("strategy", "cheapest", choices=STRATEGIES), weights=tuple(weights.items()))


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
        w_cost, w_lat, w_rel, w_q = self.weights[PRIORITY_NAMES[int(req.priority[i])]]

        def norm(x):
            span = x[pool].max() - x[pool].min()
            return (x[pool] - x[pool].min()) / span if span > 0 else np.zeros(len(pool))
        score = (w_cost * (1 - norm(cost)) + w_lat * (1 - norm(latency)) + w_rel * self.reliability[pool]
                 + w_q * quality[pool])
        return int(pool[int(np.argmax(score))])

    def on_request(self, i: int) -> bool:
        k = self.choose(i)
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
