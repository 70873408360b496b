"""The ledger: one row per request, written into preallocated numpy arrays during a run.

Columns are the contract in DESIGN.md (`request_id, t_arrival_s, tenant, feature, provider,
model, input_tokens, cached_input_tokens, output_tokens, cost_usd, baseline_cost_usd,
queue_ms, service_ms, latency_ms, outcome`) plus `cache_write_tokens`, `quality`,
`priority`, `overhead_ms` (the stages' own latency, part of `latency_ms`) and one boolean column per stage that touched the request (`stage_<name>`).
Narrow dtypes (int32, float32, categoricals) keep a row well under 120 bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lab.errors import ConfigError
from lab.files import atomic_path
from lab.scenario import PRIORITIES

if TYPE_CHECKING:
    import pandas as pd

OUTCOMES = ("ok", "cache_hit", "deduplicated", "batched", "rejected", "error")
OK, CACHE_HIT, DEDUPLICATED, BATCHED, REJECTED, ERROR = range(len(OUTCOMES))

CONTRACT_COLUMNS = (
    "request_id", "t_arrival_s", "tenant", "feature", "provider", "model", "input_tokens",
    "cached_input_tokens", "output_tokens", "cost_usd", "baseline_cost_usd", "queue_ms",
    "service_ms", "latency_ms", "outcome",
)


class RunArrays:
    """What one run writes per request; index i is request i."""

    def __init__(self, n: int):
        self.n = n
        self.outcome = np.full(n, -1, dtype=np.int8)          # -1: not finished (a bug if it stays)
        self.provider = np.full(n, -1, dtype=np.int8)         # index into the scenario's providers
        self.cached_input_tokens = np.zeros(n, dtype=np.int32)
        self.cache_write_tokens = np.zeros(n, dtype=np.int32)
        self.t_dispatch_s = np.zeros(n, dtype=np.float64)     # handed to a provider
        self.queue_ms = np.zeros(n, dtype=np.float32)
        self.service_ms = np.zeros(n, dtype=np.float32)
        self.t_done_s = np.zeros(n, dtype=np.float64)
        self.quality = np.ones(n, dtype=np.float32)
        self.stage_flags = np.zeros(n, dtype=np.uint32)      # bit k: stage k touched the request
        self.answered_by = np.full(n, -1, dtype=np.int8)      # stage that answered, -1: a provider did
        self.extra_cost_usd = np.zeros(n, dtype=np.float64)  # e.g. a background refresh it triggered
        self.cost_usd = np.zeros(n, dtype=np.float64)         # priced after the run
        self.input_tokens = np.zeros(n, dtype=np.int32)       # what was sent (compression may trim it)
        self.output_tokens = np.zeros(n, dtype=np.int32)      # what came back (a max_tokens cap may cut it)
        self.attempts = np.zeros(n, dtype=np.int8)            # provider calls made for the request
        self.status = np.zeros(n, dtype=np.int16)             # last HTTP status (0: no provider call)
        self.provider_calls = 0                               # calls sent: a request batch is one, a retry another
        self.overhead_ms = np.zeros(n, dtype=np.float32)      # the stages' own latency (lookups, hops)

    def latency_ms(self, t_arrival_s: np.ndarray) -> np.ndarray:
        return ((self.t_done_s - t_arrival_s) * 1000.0 + self.overhead_ms).astype(np.float32)


def _writable(values: np.ndarray) -> np.ndarray:
    """A shared baseline's arrays are read-only: the ledger gets its own copy, so editing it is safe."""
    return values if values.flags.writeable else values.copy()


def build_ledger(requests, run: RunArrays, baseline: RunArrays, provider_names, model_names,
                 stage_names) -> pd.DataFrame:
    """The per-request DataFrame: contract columns first, then extras and stage flags."""
    import pandas as pd  # ~75 MB resident: loaded when a ledger is built, not by `import lab`

    n = len(requests)
    prov_idx = np.where(run.provider < 0, len(provider_names), run.provider).astype(np.int8)
    def codes(names):
        cats = list(dict.fromkeys(names))
        return np.array([cats.index(x) for x in names], dtype=np.int16), cats

    prov_codes, prov_cats = codes(list(provider_names) + ["none"])
    model_codes, model_cats = codes(list(model_names) + ["none"])
    cols = {
        "request_id": np.arange(n, dtype=np.int32),
        "t_arrival_s": _writable(requests.t_arrival_s),
        "tenant": pd.Categorical.from_codes(_writable(requests.tenant), categories=list(requests.tenant_names)),
        "feature": pd.Categorical.from_codes(_writable(requests.feature), categories=list(requests.feature_names)),
        "provider": pd.Categorical.from_codes(prov_codes[prov_idx], categories=prov_cats),
        "model": pd.Categorical.from_codes(model_codes[prov_idx], categories=model_cats),
        "input_tokens": run.input_tokens,
        "cached_input_tokens": run.cached_input_tokens,
        "output_tokens": run.output_tokens,
        "cost_usd": run.cost_usd,
        "baseline_cost_usd": _writable(baseline.cost_usd),
        "queue_ms": run.queue_ms,
        "service_ms": run.service_ms,
        "latency_ms": run.latency_ms(requests.t_arrival_s),
        "outcome": pd.Categorical.from_codes(run.outcome, categories=list(OUTCOMES)),
        "cache_write_tokens": run.cache_write_tokens,
        "quality": run.quality,
        "priority": pd.Categorical.from_codes(_writable(requests.priority), categories=list(PRIORITIES)),
        "attempts": run.attempts,
        "http_status": run.status,
        "overhead_ms": run.overhead_ms,
    }
    if requests.session is not None:   # conversation-shaped traffic: which session and turn
        cols["session"], cols["turn"] = requests.session, requests.turn
    for k, name in enumerate(stage_names):
        cols[f"stage_{name}"] = (run.stage_flags & np.uint32(1 << k)) != 0
    return pd.DataFrame(cols, copy=False)


def write_ledger(df: pd.DataFrame, path: str) -> None:
    """Write CSV or Parquet by suffix, atomically: a crash never leaves half a ledger."""
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise ConfigError(f"--ledger {path}: expected a .csv or .parquet file name")
    with atomic_path(target) as tmp:
        if suffix == ".csv":
            df.to_csv(tmp, index=False)
        else:
            df.to_parquet(tmp, index=False)
