"""Every lesson dashboard's knobs visibly move its charts on the lesson's own scenario.

A dashboard that does not respond teaches nothing (lesson 08's old budget dashboard moved cost
by 0.4 % across its whole range). Each knob is driven from one end of its range to the other
(a dropdown through its options) on the scenario its lesson shows, and the headline metric
the knob is about must change by at least MIN_CHANGE (relative): cost for caches, budgets and
cascades, p95 latency for batching windows and traffic rates. The bar is a design choice (a
change a learner sees on the chart's axis), not a measured figure; the changes measured here
(1,000 requests, seed 0) are far larger: cache capacity 10 -> 20,000 cuts cost 18 %, the
cascade threshold 0 -> 1 multiplies it by 46, the daily budget $0.01 -> $10,000 takes it from
$0 to $6.63, a batch window of 2 s triples p95.
"""

from __future__ import annotations

import pytest

from lab import lessons
from lab.widgets import KNOBS, Dashboard

MIN_CHANGE = 0.10
POLICY_MIN_CHANGE = 0.03
REQUESTS = 1000

ROUTING = {**lessons.ROUTING_SCENARIO,
           "pipeline": [{"stage": "cascade", "models": lessons.CASCADE_MODELS, "threshold": 0.8}]}

#: lesson -> (scenario as the lesson builds it, {knob: metric it must move}, settings made first)
DASHBOARDS = {
    "00": ("support-chatbot", {"cache capacity": "cost", "cache TTL (s)": "cost", "traffic rate (req/s)": "p95"}, {}),
    "03": ("support-chatbot", {"cache capacity": "cost", "cache TTL (s)": "cost"}, {}),
    # a replacement policy only matters when the cache is full: compared at 100 entries, where LFU
    # against FIFO is a second-order effect (5.9 % measured here): its own bar, POLICY_MIN_CHANGE
    "03-policy": ("support-chatbot", {"cache policy": "cost"}, {"cache capacity": 100}),
    "05": ("analytics-dashboard-batching", {"batch window (ms)": "p95", "batch size": "cost"}, {}),
    "07": (ROUTING, {"cascade threshold": "cost"}, {}),
    "08": (lessons.BUDGET_SCENARIO, {"daily budget (USD)": "cost", "budget action": "cost",
                                     "traffic rate (req/s)": "p95"}, {}),
}


def _headline(summary: dict, metric: str) -> float:
    return summary["cost_usd"] if metric == "cost" else summary["latency_ms"]["p95"]


def _ends(dash: Dashboard, label: str) -> list:
    knob, control = KNOBS[label], dash.controls[label]
    if knob.kind == "choice":
        return list(knob.options)
    if knob.kind == "log":
        return [10 ** control.min, 10 ** control.max]
    return [control.min, control.max]


@pytest.mark.parametrize("lesson", list(DASHBOARDS))
def test_every_knob_moves_its_headline_metric(lesson):
    scenario, knobs, first = DASHBOARDS[lesson]
    dash = Dashboard(scenario, knobs=[*first, *knobs], requests=REQUESTS, seed=0, debounce_s=0)
    for label, value in first.items():
        dash.controls[label].value = value
    for label, metric in knobs.items():
        start = dash.controls[label].value
        seen = []
        for value in _ends(dash, label):
            dash.controls[label].value = value
            assert dash.error is None, f"lesson {lesson}, {label} = {value}: {dash.error}"
            seen.append(_headline(dash.summary, metric))
        low, high = min(seen), max(seen)
        change = (high - low) / max(abs(high), 1e-12)
        bar = POLICY_MIN_CHANGE if label == "cache policy" else MIN_CHANGE
        assert change >= bar, (f"lesson {lesson}: {label} across its range moves {metric} by only "
                                      f"{100 * change:.1f} % ({seen})")
        dash.controls[label].value = start
