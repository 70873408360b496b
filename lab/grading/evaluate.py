"""Scoring a policy: grader-owned code runs `lab.simulate` on the given seeds and applies the formula.

The same function scores a learner's preview on public seeds (in their notebook) and the
grader's verdict on private seeds (in the grader's process): only the seeds differ. Metrics
are aggregated so that constraints hold on every seed (worst case) while the score is the
mean reduction, as `SCORE_FORMULA` says. No seed value is ever put in the result.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from lab.fmt import html_text
from lab.grading.challenge import SCORE_FORMULA, Challenge
from lab.grading.policy_schema import Policy, build_scenario
from lab.runs import seed_metrics


@dataclass
class Evaluation:
    """Score, constraint verdicts, aggregated metrics and badges of one policy on a set of seeds."""

    challenge: str
    score: float
    constraints_met: bool
    constraints: dict
    metrics: dict
    badges: list[str]
    passed: bool
    seconds: float = 0.0
    formula: str = field(default=SCORE_FORMULA, repr=False)

    def as_dict(self) -> dict:
        return {"score": self.score, "constraints_met": self.constraints_met, "passed": self.passed,
                "constraints": self.constraints, "metrics": self.metrics, "badges": self.badges}

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{html_text(name)}</td><td>{c['value']:.4g}</td><td>{html_text(c['op'])} {c['limit']:g}</td>"
            f"<td>{'met' if c['met'] else 'MISSED'}</td></tr>" for name, c in self.constraints.items())
        m = self.metrics
        return (f"<h4>score {self.score:.2f} {'(passed)' if self.passed else ''}</h4>"
                f"<p>reduction {m['reduction_pct']:.2f} % (worst seed {m['reduction_pct_min']:.2f} %) over "
                f"{m['seeds']} seeds of {m['requests_per_seed']:,} requests · badges: "
                f"{html_text(', '.join(self.badges) or 'none yet')}</p>"
                f"<table><tr><th>constraint</th><th>worst seed</th><th>limit</th><th></th></tr>{rows}</table>"
                f"<p><small>{html_text(self.formula)}</small></p>")


def _finite(x: float, bad: float) -> float:
    return x if math.isfinite(x) else bad


def evaluate(challenge: Challenge, policy: Policy, seeds, requests: int | None = None,
             progress: bool = False) -> Evaluation:
    """Simulate the policy on each seed and score it (see SCORE_FORMULA)."""
    start = time.perf_counter()
    scenario = build_scenario(challenge, policy)
    per_seed = seed_metrics(scenario, seeds, requests or challenge.requests, progress=progress)
    g = challenge.goal
    metrics = {
        "reduction_pct": _finite(float(np.mean([m["reduction_pct"] for m in per_seed])), 0.0),
        "reduction_pct_min": _finite(min(m["reduction_pct"] for m in per_seed), 0.0),
        "p95_ms": _finite(max(m["p95_ms"] for m in per_seed), math.inf),
        "quality_min": _finite(min(m["quality_mean"] for m in per_seed), 0.0),
        "error_rate_max": _finite(max(m["failed_rate"] for m in per_seed), 1.0),
        "cache_hit_rate": float(np.mean([m["cache_hit_rate"] for m in per_seed])),
        "cost_usd": float(np.mean([m["cost_usd"] for m in per_seed])),
        "baseline_cost_usd": float(np.mean([m["baseline_cost_usd"] for m in per_seed])),
        "stages": len(policy.pipeline),
        "seeds": len(per_seed),
        "requests_per_seed": per_seed[0]["requests"],
    }
    constraints = {
        "sla_p95_ms": {"value": metrics["p95_ms"], "op": "<=", "limit": g.sla_p95_ms,
                       "met": metrics["p95_ms"] <= g.sla_p95_ms},
        "quality_floor": {"value": metrics["quality_min"], "op": ">=", "limit": g.quality_floor,
                          "met": metrics["quality_min"] >= g.quality_floor},
        "error_budget": {"value": metrics["error_rate_max"], "op": "<=", "limit": g.error_budget,
                         "met": metrics["error_rate_max"] <= g.error_budget},
    }
    met = all(c["met"] for c in constraints.values())
    score = round(max(metrics["reduction_pct"], 0.0), 2) if met else 0.0
    metrics["score"] = score
    badges = [b.id for b in challenge.badges if b.earned(metrics, met)]
    return Evaluation(challenge=challenge.id, score=score, constraints_met=met, constraints=constraints,
                      metrics=metrics, badges=badges, passed=met and score >= g.target_reduction_pct,
                      seconds=time.perf_counter() - start)
