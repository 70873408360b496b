"""Exercises 10-13: size a deployment with a twin, write a KPI, cap a live call's spend, choose from a sweep."""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import pandas as pd

from lab.analysis.kpi import Formula
from lab.errors import CostlabError
from lab.lessons.checks import Exercise, NotYet, picked, require, require_number, self_check, smallest_passing
from lab.lessons.prices import LIVE_PROMPT, worst_case_usd
from lab.lessons.scenarios import stale_catalog_dict, variant
from lab.runs import metrics, run, run_seeds
from lab.traces import shipped_trace_path
from lab.twin import calibrate


class TwinConcurrency(Exercise):
    lesson, title = "10", "size a deployment with the twin"
    task = ("Calibrate a twin of the Azure conversation trace (gpt-4o-mini, SLA p95 8,000 ms). Find the smallest "
            "provider concurrency (slots) at which the twin's p95 latency meets the SLA (seed 0, the twin's full "
            "hour). Explore with measure(concurrency=...), then check(concurrency=...): it passes within 25 % of "
            "the smallest.")
    seed, sla_ms, slack = 0, 8000.0, 1.25
    reference = {"concurrency": 32}
    wrong = {"concurrency": 16}

    @functools.cached_property
    def twin(self):
        return calibrate(shipped_trace_path("azure_conv"), format="azure", sla_p95_ms=self.sla_ms)

    def measure(self, concurrency: int) -> dict:
        def compute():
            twin = self.twin
            scenario = twin.replace(providers=(dataclasses.replace(twin.providers[0], concurrency=int(concurrency)),))
            return picked(run(scenario, self.seed), "p95_ms", "queue_p95_ms")
        return self._memo(int(concurrency), compute)

    @functools.cached_property
    def smallest(self) -> int:
        return smallest_passing(lambda c: self.measure(c)["p95_ms"] <= self.sla_ms, 1, 256)

    @self_check
    def check(self, concurrency=None):
        require_number(concurrency, "concurrency", integer=True)
        require(concurrency >= 1, "concurrency should be at least 1 slot")
        m = self.measure(int(concurrency))
        require(m["p95_ms"] <= self.sla_ms, f"p95 {m['p95_ms']:,.0f} ms: requests queue for a free slot in the "
                "trace's bursts; add slots", m)
        require(concurrency <= self.slack * self.smallest, "the SLA holds, but with slots to spare: reserved "
                "capacity costs money too", m)
        return (f"{concurrency} slots: p95 {m['p95_ms']:,.0f} ms (smallest that meets the SLA: {self.smallest}).",
                m)


class KpiFormula(Exercise):
    lesson, title = "11", "write a KPI"
    task = ("Write a KPI formula (lab.analysis.kpi syntax) for the mean cost of a request that was answered by a "
            "provider (outcome \"ok\"), in USD, and call check(formula='...'). It is evaluated on the support "
            "chatbot's ledger (2,000 requests, seed 0).")
    reference = {"formula": 'mean(cost_usd where outcome == "ok")'}
    wrong = {"formula": "mean(cost_usd)"}

    @functools.cached_property
    def ledger(self) -> pd.DataFrame:
        return run(variant("support-chatbot"), 0, 2000).ledger

    def measure(self, formula: str) -> dict:
        return {"value": Formula(formula).evaluate(self.ledger)}

    @self_check
    def check(self, formula=None):
        require(isinstance(formula, str) and bool(formula.strip()), "formula should be a string such as "
                "'sum(cost_usd)'")
        try:
            value = self.measure(formula)["value"]
        except CostlabError as exc:
            raise NotYet(f"the formula does not parse: {exc}") from None
        led = self.ledger
        truth = float(led.loc[led["outcome"] == "ok", "cost_usd"].mean())
        require(math.isclose(value, truth, rel_tol=1e-9), "not the mean over provider-answered requests: a cache "
                "hit costs $0 and pulls the mean down; restrict it with `where outcome == \"ok\"`", {"value": value})
        return f"${truth:.6f} per provider-answered request.", {"value": value}


class LiveBudget(Exercise):
    lesson, title = "12", "max_tokens under a spend cap"
    task = ("A Session refuses a call unless its worst case fits the budget. For one call to "
            "anthropic/claude-sonnet-4-5 with the prompt lessons.LIVE_PROMPT and a $0.01 budget, what is the "
            "largest max_tokens that is still accepted? Explore with measure(max_tokens=...), then "
            "check(max_tokens=...): it passes at 90 % or more of the largest.")
    model, budget_usd = "anthropic/claude-sonnet-4-5", 0.01
    reference = {"max_tokens": 590}
    wrong = {"max_tokens": 1000}

    def measure(self, max_tokens: int) -> dict:
        worst = worst_case_usd(self.model, LIVE_PROMPT, int(max_tokens))
        return {"worst_case_usd": worst, "fits": worst <= self.budget_usd + 1e-12}

    @functools.cached_property
    def largest(self) -> int:
        return smallest_passing(lambda n: not self.measure(n)["fits"], 1, 100_000) - 1

    @self_check
    def check(self, max_tokens=None):
        require_number(max_tokens, "max_tokens", integer=True)
        require(max_tokens >= 1, "max_tokens should be at least 1")
        m = self.measure(int(max_tokens))
        require(m["fits"], f"worst case ${m['worst_case_usd']:.5f} is over the $0.01 budget: the session would "
                "refuse it", m)
        require(max_tokens >= 0.9 * self.largest, "accepted, but a longer answer would still fit: worst case = "
                "counted prompt x 1.3 (estimated tokenizer) x input price + max_tokens x output price", m)
        return (f"max_tokens {max_tokens}: worst case ${m['worst_case_usd']:.5f} (largest that fits: "
                f"{self.largest}).", m)


class SweepChoice(Exercise):
    lesson, title = "13", "choose from a sweep"
    task = ("The catalog without invalidation: a cached answer is wrong once its product changed, until the TTL "
            "expires. Sweep pipeline[cache].ttl_s over SWEEP_TTLS and pipeline[cache].capacity over "
            "SWEEP_CAPACITIES (3,000 requests, seeds 0, 1 and 2). Choose the cheapest point whose mean quality is "
            "at least 0.95 and call check(ttl_s=..., capacity=...): it passes within 2 % of the cheapest.")
    ttls, capacities = (5, 10, 20, 30, 60), (100, 500, 2000)
    seeds, requests, floor = (0, 1, 2), 3000, 0.95
    wrong = {"ttl_s": 60, "capacity": 2000}

    @property
    def reference(self) -> dict:
        """The cheapest feasible grid point (computed: it is what reading the sweep table gives)."""
        (ttl_s, capacity), _ = self.best
        return {"ttl_s": ttl_s, "capacity": capacity}

    def measure(self, ttl_s: float, capacity: int) -> dict:
        def compute():
            point = {"pipeline[cache].ttl_s": float(ttl_s), "pipeline[cache].capacity": int(capacity)}
            runs = [metrics(r) for r in run_seeds(variant(stale_catalog_dict(), point), self.seeds, self.requests)]
            return {"cost_usd": float(np.mean([m["cost_usd"] for m in runs])),
                    "quality_mean": float(np.mean([m["quality_mean"] for m in runs]))}
        return self._memo((float(ttl_s), int(capacity)), compute)

    @functools.cached_property
    def best(self) -> tuple[tuple, dict]:
        points = {(t, c): self.measure(t, c) for t in self.ttls for c in self.capacities}
        feasible = {k: v for k, v in points.items() if v["quality_mean"] >= self.floor}
        key = min(feasible, key=lambda k: feasible[k]["cost_usd"])
        return key, feasible[key]

    @self_check
    def check(self, ttl_s=None, capacity=None):
        require_number(ttl_s, "ttl_s")
        require_number(capacity, "capacity", integer=True)
        require(ttl_s in self.ttls and capacity in self.capacities, f"choose ttl_s from {self.ttls} and capacity "
                f"from {self.capacities} (the grid you swept)")
        m = self.measure(ttl_s, capacity)
        require(m["quality_mean"] >= self.floor, f"mean quality {m['quality_mean']:.3f} < 0.95: stale answers; a "
                "shorter TTL refreshes them sooner", m)
        (bt, bc), bm = self.best
        require(m["cost_usd"] <= 1.02 * bm["cost_usd"], "fresh enough, but another grid point is cheaper at the "
                "same quality floor: read the sweep table again", m)
        return (f"ttl_s {ttl_s:g}, capacity {capacity}: quality {m['quality_mean']:.3f} at ${m['cost_usd']:.4f} "
                f"(cheapest feasible: ttl_s {bt:g}, capacity {bc}).", m)


SWEEP_TTLS, SWEEP_CAPACITIES = SweepChoice.ttls, SweepChoice.capacities


class GatewayHolds(Exercise):
    lesson, title = "14", "how many calls at once under a learner's cap?"
    task = ("The class gateway holds each call's worst case (counted prompt + max_tokens, at list price) until the "
            "provider's bill comes back. A learner with a $0.001 daily cap sends calls to openai/gpt-4o-mini with "
            "the prompt lessons.LIVE_PROMPT and max_tokens=500, all at the same moment. How many of them does the "
            "gateway admit? Explore with measure(max_tokens=..., calls=...), then check(calls=...).")
    model, cap_usd, max_tokens = "gpt-4o-mini", 0.001, 500
    reference = {"calls": 3}
    wrong = {"calls": 10}

    def measure(self, max_tokens: int = 500, calls: int = 1) -> dict:
        from lab.gateway.wire import WIRES  # reason: lab.gateway pulls in its extra (starlette, httpx)

        body = {"model": self.model, "max_tokens": int(max_tokens),
                "messages": [{"role": "user", "content": LIVE_PROMPT}]}
        worst = WIRES["openai"].worst_case_usd(body, self.model)
        return {"worst_case_usd": worst, "held_usd": worst * int(calls),
                "all_admitted": worst * int(calls) <= self.cap_usd + 1e-12,
                "admitted_at_once": int(self.cap_usd // worst)}

    @self_check
    def check(self, calls=None):
        require_number(calls, "calls", integer=True)
        m = self.measure(self.max_tokens, int(calls))
        right = m["admitted_at_once"]
        require(int(calls) <= right, f"{calls} calls would hold ${m['held_usd']:.6f}, over the $0.001 cap: the "
                "last ones are refused before they reach the provider", m)
        require(int(calls) == right, "all admitted, but one more would still fit: divide the cap by one call's "
                "worst case (prompt tokens x input price + max_tokens x output price)", m)
        return (f"{calls} calls: each holds ${m['worst_case_usd']:.6f} until its bill settles.", m)
