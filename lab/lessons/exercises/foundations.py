"""Exercises 00-02: read your run's bill, price one call, count what never reached a provider."""

from __future__ import annotations

import math

from lab.lessons.checks import Exercise, require, require_number, self_check
from lab.lessons.prices import LESSON_MODELS, call_cost_usd


class ReadTheBill(Exercise):
    lesson, title = "00", "read the bill"
    task = ("From your run's summary, work out what 1,000 requests cost after optimization (in USD) and "
            "which stage saved the most money, then call check(result, cost_per_1k_usd=..., top_stage=...).")

    def reference_for(self, result) -> dict:
        s = result.summary()
        top = max(s["by_stage"], key=lambda k: s["by_stage"][k]["cost_saved_usd"])
        return {"cost_per_1k_usd": 1000 * s["cost_usd"] / s["requests"], "top_stage": top}

    @self_check
    def check(self, result, cost_per_1k_usd=None, top_stage=None):
        ref = self.reference_for(result)
        require_number(cost_per_1k_usd, "cost_per_1k_usd")
        close = math.isclose(float(cost_per_1k_usd), ref["cost_per_1k_usd"], rel_tol=0.01)
        stage_ok = str(top_stage) == ref["top_stage"]
        hints = []
        if not close:
            hints.append("cost per 1,000 requests comes from the optimized bill (summary()['cost_usd'], not the "
                         "baseline) and summary()['requests']")
        if not stage_ok:
            hints.append("look at cost_saved_usd of each stage in summary()['by_stage']")
        require(close and stage_ok, "; ".join(hints), {"your cost_per_1k_usd": float(cost_per_1k_usd),
                                                       "your top_stage": str(top_stage)})
        return f"${ref['cost_per_1k_usd']:.4f} per 1,000 requests; {ref['top_stage']} saved the most.", {}


class CheapestCall(Exercise):
    lesson, title = "01", "the cheapest model for one call"
    task = ("A call sends 3,000 input tokens and gets 500 output tokens back, nothing cached, no batch API. "
            "Which of lessons.LESSON_MODELS is cheapest for it, and what does the call cost in USD? "
            "Call check(model='provider/model', cost_usd=...).")
    input_tokens, output_tokens = 3000, 500
    reference = {"model": "google/gemini-2.5-flash-lite", "cost_usd": 0.0005}
    wrong = {"model": "openai/gpt-4o-mini", "cost_usd": 0.00075}

    def measure(self, model: str) -> dict:
        return {"cost_usd": call_cost_usd(model, self.input_tokens, self.output_tokens)}

    @self_check
    def check(self, model=None, cost_usd=None):
        costs = {m: call_cost_usd(m, self.input_tokens, self.output_tokens) for m in LESSON_MODELS}
        best = min(costs, key=costs.get)
        require_number(cost_usd, "cost_usd")
        require(model in costs, f"model should be one of {', '.join(LESSON_MODELS)}")
        require(model == best, f"{model} costs ${costs[model]:.6f} for this call; another model is cheaper "
                "(price = input tokens x input price + output tokens x output price, per million)",
                {"your model": model})
        require(math.isclose(float(cost_usd), costs[best], rel_tol=0.01),
                "right model; now the cost: 3,000 x input price / 1e6 + 500 x output price / 1e6",
                {"your cost_usd": float(cost_usd)})
        return f"{best}: ${costs[best]:.6f} per call.", {}


class NoCallShare(Exercise):
    lesson, title = "02", "requests that never reached a provider"
    task = ("With pandas on result.ledger, compute the share of requests answered without a provider call "
            "(outcome 'cache_hit' or 'deduplicated'), then call check(result, share=...).")

    def reference_for(self, result) -> dict:
        out = result.ledger["outcome"]
        return {"share": float(out.isin(["cache_hit", "deduplicated"]).mean())}

    @self_check
    def check(self, result, share=None):
        require_number(share, "share")
        ref = self.reference_for(result)["share"]
        hint = ("a share is between 0 and 1, not a percentage" if float(share) > 1 else
                "count both outcomes: ledger['outcome'].isin(['cache_hit', 'deduplicated']).mean()")
        require(math.isclose(float(share), ref, abs_tol=1e-6), hint, {"your share": float(share)})
        return f"{100 * ref:.2f} % of requests cost no provider call.", {}
