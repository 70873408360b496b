"""Exercises 03-07: size a cache, a dedup window and batches; choose prompt-cache writes and a cascade threshold."""

from __future__ import annotations

import functools

from lab.lessons.checks import Exercise, picked, require, require_number, self_check, smallest_passing
from lab.lessons.scenarios import CASCADE_MODELS, ROUTING_SCENARIO, build, prompt_cache_ttl_dict, variant
from lab.runs import metrics, run


class CacheCapacity(Exercise):
    lesson, title = "03", "size a response cache"
    task = ("On the support chatbot (5,000 requests, seed 0, an LRU cache as the only stage), find the smallest "
            "capacity (entries) whose hit rate reaches 40 %. Explore with measure(capacity=...), then "
            "check(capacity=...): it passes within 25 % of the smallest such capacity.")
    requests, seed, target, slack = 5000, 0, 0.40, 1.25
    reference = {"capacity": 700}
    wrong = {"capacity": 5000}

    def measure(self, capacity: int) -> dict:
        def compute():
            scenario = variant("support-chatbot", pipeline=[{"stage": "cache", "capacity": int(capacity)}])
            return picked(run(scenario, self.seed, self.requests), "cache_hit_rate", "reduction_pct")
        return self._memo(int(capacity), compute)

    @functools.cached_property
    def smallest(self) -> int:
        return smallest_passing(lambda c: self.measure(c)["cache_hit_rate"] >= self.target, 1, 10_000)

    @self_check
    def check(self, capacity=None):
        require_number(capacity, "capacity", integer=True)
        require(capacity >= 1, "capacity should be at least 1 entry")
        hit = self.measure(int(capacity))["cache_hit_rate"]
        measured = {"hit_rate": hit}
        require(hit >= self.target, f"capacity {capacity} reaches only {100 * hit:.1f} % hits: make it bigger",
                measured)
        require(capacity <= self.slack * self.smallest, f"{100 * hit:.1f} % hits, but a much smaller cache gets "
                "there too: memory is not free (halve it and measure again)", measured)
        return (f"{capacity} entries reach {100 * hit:.1f} % hits (the smallest that does: {self.smallest}). "
                "Zipf popularity: a few hundred entries hold most of the traffic.", measured)


class DedupWindow(Exercise):
    lesson, title = "04", "how long may an answer be reused?"
    task = ("On the bursty social feed (6,000 requests, seed 0, dedup as the only stage, shared across tenants), "
            "find the smallest window_s (whole seconds) at which dedup saves at least 70 % of the bill. "
            "Explore with measure(window_s=...), then check(window_s=...): it passes within 1.5x of the smallest.")
    requests, seed, target, slack = 6000, 0, 70.0, 1.5
    reference = {"window_s": 8}
    wrong = {"window_s": 60}

    def measure(self, window_s: float) -> dict:
        def compute():
            stage = {"stage": "dedup", "shared": True, "window_s": float(window_s)}
            result = run(variant("bursty-social-feed", pipeline=[stage]), self.seed, self.requests)
            dedup = result.summary()["by_stage"]["dedup"]
            return {**picked(result, "reduction_pct"), "followers": dedup["followers"],
                    "window_hits": dedup["window_hits"]}
        return self._memo(float(window_s), compute)

    @functools.cached_property
    def smallest(self) -> int:
        return smallest_passing(lambda w: self.measure(w)["reduction_pct"] >= self.target, 0, 120)

    @self_check
    def check(self, window_s=None):
        require_number(window_s, "window_s")
        require(window_s >= 0, "window_s cannot be negative")
        red = self.measure(window_s)["reduction_pct"]
        measured = {"reduction_pct": red}
        require(red >= self.target, f"window {window_s:g} s saves {red:.1f} %: reuse answers a little longer",
                measured)
        require(window_s <= self.slack * self.smallest, f"{red:.1f} % saved, but answers up to {window_s:g} s old "
                "are served where a shorter window already reaches 70 %: shorter is fresher", measured)
        return f"{window_s:g} s saves {red:.1f} % (smallest whole window that does: {self.smallest} s).", measured


class Batching(Exercise):
    lesson, title = "05", "batch the dashboard under an SLA"
    task = ("On the analytics dashboard (4,000 requests, seed 0, a batch stage as the only stage), choose "
            "max_batch_size and window_ms so that cost falls by at least 40 % while p95 latency stays at or "
            "under 4,500 ms. Explore with measure(...), then check(max_batch_size=..., window_ms=...).")
    requests, seed, target_pct, p95_limit_ms = 4000, 0, 40.0, 4500.0
    reference = {"max_batch_size": 5, "window_ms": 150}
    wrong = {"max_batch_size": 20, "window_ms": 150}

    def measure(self, max_batch_size: int, window_ms: float = 150) -> dict:
        stage = {"stage": "batch", "max_batch_size": int(max_batch_size), "window_ms": float(window_ms)}
        result = run(variant("analytics-dashboard-batching", pipeline=[stage]), self.seed, self.requests)
        return picked(result, "reduction_pct", "p95_ms")

    @self_check
    def check(self, max_batch_size=None, window_ms=150):
        require_number(max_batch_size, "max_batch_size", integer=True)
        require_number(window_ms, "window_ms")
        require(max_batch_size >= 1 and window_ms >= 0, "max_batch_size should be >= 1 and window_ms >= 0")
        m = self.measure(max_batch_size, window_ms)
        require(m["reduction_pct"] >= self.target_pct, f"only {m['reduction_pct']:.1f} % saved: bigger batches "
                "share the system prompt among more requests", m)
        require(m["p95_ms"] <= self.p95_limit_ms, f"p95 {m['p95_ms']:,.0f} ms is over 4,500 ms: a batch's answers "
                "are generated one after another, so big batches are slow", m)
        return f"{m['reduction_pct']:.1f} % cheaper at p95 {m['p95_ms']:,.0f} ms.", m


class PromptCacheTtl(Exercise):
    lesson, title = "06", "5-minute or 1-hour cache writes?"
    task = ("Anthropic prompt caching on claude-sonnet-4-5 with a 3,000-token system prompt. One workload sends "
            "a request every 10 minutes ('slow'), another one per second ('fast'). For each, which anthropic_ttl "
            "('5m': writes cost 1.25x input; '1h': 2x) gives the lower bill? Explore with "
            "measure(anthropic_ttl=..., rate_per_s=...), then check(slow='5m' or '1h', fast='5m' or '1h').")
    rates = {"slow": 1 / 600, "fast": 1.0}
    reference = {"slow": "1h", "fast": "5m"}
    wrong = {"slow": "5m", "fast": "5m"}

    def measure(self, anthropic_ttl: str, rate_per_s: float) -> dict:
        result = run(build(prompt_cache_ttl_dict(anthropic_ttl, rate_per_s)), 0)
        return {**picked(result, "cost_usd", "reduction_pct"),
                "block_hit_ratio": result.summary()["by_stage"]["prompt_cache"]["block_hit_ratio"]}

    def _base(self, rate: float) -> float:
        return metrics(run(build(prompt_cache_ttl_dict("5m", rate)), 0))["baseline_cost_usd"]

    @self_check
    def check(self, slow=None, fast=None):
        answers = {"slow": slow, "fast": fast}
        for k, v in answers.items():
            require(v in ("5m", "1h"), f"{k} should be '5m' or '1h', got {v!r}")
        measured, wrong = {}, []
        for k, rate in self.rates.items():
            cost = {ttl: self.measure(ttl, rate)["cost_usd"] for ttl in ("5m", "1h")}
            best = min(cost, key=cost.get)
            measured[f"{k}: 5m vs 1h reduction"] = (f"{100 * (1 - cost['5m'] / self._base(rate)):.1f} % vs "
                                                     f"{100 * (1 - cost['1h'] / self._base(rate)):.1f} %")
            if answers[k] != best:
                wrong.append(k)
        require(not wrong, f"not the cheaper choice for: {', '.join(wrong)}. A write pays off only if the entry "
                "is read again before it expires: compare the gap between requests with each TTL")
        return ("1-hour writes cost more but survive a 10-minute gap; at one request a second the 5-minute cache "
                "never expires and its cheaper writes win.", measured)


class CascadeThreshold(Exercise):
    lesson, title = "07", "the cheapest cascade that keeps quality"
    task = ("Cascade gemini-2.5-flash-lite -> claude-haiku-4-5 -> claude-sonnet-4-5 on the lesson's routing "
            "scenario (3,000 requests, seed 0). Find the threshold (a multiple of 0.05) with the lowest cost "
            "whose mean quality is at least 0.85. Explore with measure(threshold=...), then check(threshold=...): "
            "it passes within 10 % of the cheapest such threshold's cost.")
    requests, seed, floor, slack = 3000, 0, 0.85, 1.10
    grid = tuple(round(0.05 * k, 2) for k in range(6, 20))
    reference = {"threshold": 0.75}
    wrong = {"threshold": 0.5}

    def measure(self, threshold: float) -> dict:
        def compute():
            stage = {"stage": "cascade", "models": CASCADE_MODELS, "threshold": float(threshold)}
            result = run(variant(ROUTING_SCENARIO, pipeline=[stage]), self.seed, self.requests)
            return picked(result, "cost_usd", "reduction_pct", "quality_mean")
        return self._memo(round(float(threshold), 6), compute)

    @functools.cached_property
    def best(self) -> tuple[float, dict]:
        feasible = [(t, m) for t in self.grid if (m := self.measure(t))["quality_mean"] >= self.floor]
        return min(feasible, key=lambda tm: tm[1]["cost_usd"])

    @self_check
    def check(self, threshold=None):
        require_number(threshold, "threshold")
        require(0 <= threshold <= 1, "threshold is a quality between 0 and 1")
        m = self.measure(threshold)
        require(m["quality_mean"] >= self.floor, f"mean quality {m['quality_mean']:.4f} is below 0.85: escalate "
                "more (raise the threshold)", m)
        _, best = self.best
        require(m["cost_usd"] <= self.slack * best["cost_usd"], "quality holds, but a lower threshold keeps it "
                "for less (every escalation pays for a discarded answer)", m)
        return (f"threshold {threshold:g}: quality {m['quality_mean']:.4f} at {m['reduction_pct']:.1f} % below the "
                "all-Sonnet bill.", m)
