"""The gateway's Prometheus metrics, on a registry of its own (one per app, so tests do not collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

#: seconds; the overhead buckets resolve the 2 ms / 10 ms targets
OVERHEAD_BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
UPSTREAM_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class GatewayMetrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("costlab_gateway_requests", "Requests by provider and outcome",
                                ["provider", "outcome"], registry=r)
        self.cost = Counter("costlab_gateway_cost_usd", "Billed cost (USD) by provider", ["provider"], registry=r)
        self.saved = Counter("costlab_gateway_saved_usd", "Baseline minus billed cost (USD)", ["provider"], registry=r)
        self.cache = Counter("costlab_gateway_cache", "Response cache and dedup outcomes (hit, miss, coalesced)",
                             ["result"], registry=r)
        self.budget_left = Gauge("costlab_gateway_budget_left_usd", "What is left of the class caps",
                                 ["period"], registry=r)
        self.upstream = Histogram("costlab_gateway_upstream_seconds", "Upstream call latency", ["provider"],
                                  buckets=UPSTREAM_BUCKETS_S, registry=r)
        self.overhead = Histogram("costlab_gateway_overhead_seconds", "Time the gateway adds to a call",
                                  buckets=OVERHEAD_BUCKETS_S, registry=r)

        self._children: dict[tuple, object] = {}

    def child(self, metric, *values: str):
        """`metric.labels(*values)`, remembered: `labels()` checks and locks on every call, and every call counts."""
        key = (metric, values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return found

    def text(self) -> bytes:
        return generate_latest(self.registry)
