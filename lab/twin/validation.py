"""Validation: the twin's generated traffic against its source, metric by metric, with tolerances.

The twin's numbers are means over seeds of the request streams `lab.simulate` would play;
the source's are read the same way (`lab.twin.measures`), so a relative error says how far
the twin is from the traffic it copies.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from lab import fmt
from lab.analysis.stats import mean_ci
from lab.pricing import model_prices
from lab.runs import seed_list
from lab.scenario import Scenario
from lab.tables import ResultTable
from lab.traffic import make_requests
from lab.twin.fitting import DEFAULT_PROVIDER
from lab.twin.measures import dispersion_index, duplicate_rate, ideal_prefix_reuse, timestamp_resolution_s
from lab.twin.sources import load_source


def _twin_prefix_reuse_share(req) -> float:
    """Share of blocks an ideal prefix cache reuses in generated traffic (keys as the prompt_cache stage)."""
    if req.block_tokens <= 0 or len(req) == 0:
        return 0.0
    bt = req.block_tokens
    n_blocks = -(-req.input_tokens.astype(np.int64) // bt)
    n_prefix = np.where(req.prefix_id >= 0, np.minimum(req.prefix_tokens // bt, n_blocks), 0)
    variant_seen = _seen_before(req.prefix_id.astype(np.int64))
    prompt_seen = _seen_before(req.prompt * 64 + (req.prefix_id.astype(np.int64) + 1))
    reused = np.where(prompt_seen, n_blocks, np.where(variant_seen & (req.prefix_id >= 0), n_prefix, 0))
    return float(reused.sum() / n_blocks.sum())


def _seen_before(keys: np.ndarray) -> np.ndarray:
    """True where the same key appeared earlier in the array."""
    _, first = np.unique(keys, return_index=True)
    seen = np.ones(len(keys), dtype=bool)
    seen[first] = False
    return seen


def _traffic_stats(t, inp, out, keys, windows, cost_fn, extra: dict, resolution_s: float = 0.0) -> dict:
    span = float(t[-1] - t[0])
    stats = {"requests": len(t), "rate_per_s": len(t) / span if span > 0 else math.nan}
    for name, arr in (("input", inp), ("output", out)):
        p = np.percentile(arr, (50, 90, 99))
        stats.update({f"{name}_tokens_p50": p[0], f"{name}_tokens_p90": p[1], f"{name}_tokens_p99": p[2],
                      f"{name}_tokens_mean": float(np.mean(arr))})
    for w in windows:
        shift = resolution_s / 2 if 0 < resolution_s <= w else 0.0   # ticks centred, as fit_arrivals counts
        stats[f"dispersion_{w:g}s"] = dispersion_index(t - t[0] + shift, w, span)
    if keys is not None:
        stats["duplicate_rate"] = duplicate_rate(keys)
    stats["cost_usd_per_hour"] = cost_fn(inp, out) / span * 3600 if span > 0 else math.nan
    stats.update(extra)
    return stats


def validate(twin: Scenario, source, format: str | None = None, seeds=5, model: str | None = None) -> ResultTable:
    """Twin vs source: rate, token p50/p90/p99, dispersion, duplicates, prefix reuse and cost.

    The twin's numbers are means over `seeds` generated request streams (the same streams
    `lab.simulate` would play, with a 95 % interval); cost is the no-optimization bill at
    `model` ("provider/model", default the twin's provider), both sides priced by genai-prices.
    """
    src = load_source(source, format)
    if model:
        provider, model_id = model.split("/", 1) if "/" in model else (DEFAULT_PROVIDER, model)
    else:
        provider, model_id = twin.providers[0].name, twin.providers[0].model
    prices = model_prices(provider, model_id)

    def cost(inp, out):
        return float(prices.cost_usd(inp, out).sum())

    resolution = timestamp_resolution_s(src.t_arrival_s - src.t_arrival_s[0])
    windows = sorted({1.0, 60.0} | ({float(resolution)} if resolution > 1 else set()))
    has_keys = src.prompt_key is not None or twin.traffic.prompts.catalog > 0
    src_extra = {}
    if src.block_ids is not None:
        reused = ideal_prefix_reuse(src.block_ids, src.block_offsets)
        src_extra["prefix_reuse_share"] = float(reused.sum() / np.diff(src.block_offsets).sum())
    src_keys = src.prompt_key if src.prompt_key is not None else (np.arange(len(src)) if has_keys else None)
    source_stats = _traffic_stats(src.t_arrival_s, src.input_tokens, src.output_tokens, src_keys, windows,
                                  cost, src_extra, resolution)
    twin_runs = []
    for seed in seed_list(seeds):
        rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(3)[0])   # the stream simulate() plays
        req = make_requests(twin, rng)
        extra = {}
        if "prefix_reuse_share" in src_extra:
            extra["prefix_reuse_share"] = _twin_prefix_reuse_share(req)
        twin_runs.append(_traffic_stats(req.t_arrival_s, req.input_tokens, req.output_tokens,
                                        req.prompt if has_keys else None, windows, cost, extra))
    rows = []
    for metric, tol in _checks(windows, resolution):
        if metric not in source_stats:
            continue
        twin_value = mean_ci([r[metric] for r in twin_runs])
        mean, ref = twin_value.mean, source_stats[metric]
        err = (mean - ref) / ref if ref else (0.0 if mean == 0 else math.inf)
        rows.append({"metric": metric, "source": ref, "twin": mean, "twin_ci95": twin_value.half,
                     "rel_error": err, "tolerance": tol,
                     "ok": None if tol is None else abs(err) <= tol})
    table = pd.DataFrame(rows)
    notes = [f"twin: {twin.name} ({twin.traffic.arrivals.process}); {len(seed_list(seeds))} seeds; cost at "
             f"{provider}/{prices.model} with no optimization",
             "dispersion = variance / mean of arrival counts per window (1 for Poisson)"]
    if twin.traffic.prefix is not None and twin.traffic.prefix.system_tokens:
        notes.append(f"every twin prompt starts with a {twin.traffic.prefix.system_tokens:,}-token prefix, so source "
                     "prompts shorter than that come out longer: input mean and cost run high by about the "
                     "share calibration reports (percentiles above the prefix length are unchanged)")
    if resolution > 1:
        notes.append(f"the source's clock ticks every {resolution:g} s, so its counts in shorter windows are lumpy "
                     "by construction (not judged); from that window up each tick is counted in the window "
                     "it is centred in")
    formats = {"metric": str, "rel_error": lambda x: f"{100 * x:+.1f} %",
               "tolerance": lambda x: fmt.MISSING if _missing(x) else f"±{100 * x:g} %",
               "ok": lambda x: fmt.MISSING if _missing(x) else ("yes" if x else "NO"),
               "twin_ci95": lambda x: fmt.number(x, 2)}
    return ResultTable(f"Twin vs source · {Path(src.label).name}", table, notes, formats)


def _missing(x) -> bool:
    """No tolerance (or verdict): the metric is shown, not judged."""
    return x is None or (isinstance(x, float) and math.isnan(x))


def _checks(windows, resolution_s: float) -> list[tuple[str, float | None]]:
    out = [("requests", 0.05), ("rate_per_s", 0.05)]
    for name in ("input", "output"):
        out += [(f"{name}_tokens_p50", 0.05), (f"{name}_tokens_p90", 0.05), (f"{name}_tokens_p99", 0.05),
                (f"{name}_tokens_mean", 0.05)]
    out += [(f"dispersion_{w:g}s", 0.25 if w >= resolution_s else None) for w in windows]
    out += [("duplicate_rate", 0.25), ("prefix_reuse_share", 0.10), ("cost_usd_per_hour", 0.05)]
    return out
