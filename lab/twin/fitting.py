"""Calibration: a scenario whose traffic behaves like the source, and the reasons for each choice.

- **Arrivals** (`lab.twin.arrivals`): poisson, a diurnal rate profile or an MMPP.
- **Token lengths.** A lognormal (maximum likelihood, or one through p50 and p99, whichever
  is closer over the body of the distribution) when it reproduces p50, p90, p99 within 4 %
  and the mean within 5 %; otherwise an empirical distribution on quantiles spaced evenly in
  normal-score space (dense in the tails), the coarsest whose p50/p90/p99 and mean are within 2 %.
- **Duplicates.** Where the source identifies prompts (Mooncake: identical `hash_ids` and
  length; a generic CSV or ledger with a `prompt` column), a Zipf catalog whose expected
  number of distinct prompts matches. A ledger without prompts gives only a lower bound
  (the share the pipeline answered from cache or merged).
- **Prefix reuse.** Mooncake's `hash_ids` become `[traffic.prefix]`: `variants` system
  prompts of `system_tokens` each, matching the share of input tokens an ideal unlimited
  prefix cache reuses and the mean time between reuses. The notes say what this loses.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lab.errors import CostlabError, TraceError
from lab.loader import scenario_from_dict
from lab.models import model_info
from lab.scenario import Scenario
from lab.twin.arrivals import ArrivalFit, fit_arrivals, round_sig
from lab.twin.measures import ideal_prefix_reuse, reuse_gaps_s
from lab.twin.sources import TrafficSource, load_source

DEFAULT_PROVIDER, DEFAULT_MODEL = "openai", "gpt-4o-mini"
TOKEN_FIT_TOLERANCE = 0.02    # empirical: p50/p90/p99 and mean
LOGNORMAL_TOLERANCE = 0.04    # lognormal: p50/p90/p99 (mean within 5 %); leaves 1 % for sampling
MAX_CATALOG = 20_000_000


def _weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """Inverse CDF of a discrete distribution, as `Dist.sample` draws it."""
    cdf = np.cumsum(weights) / weights.sum()
    return float(values[min(np.searchsorted(cdf, q, side="right"), len(values) - 1)])


def _close(pred, obs, tol) -> bool:
    return all(abs(p - o) <= tol * max(abs(o), 1.0) for p, o in zip(pred, obs))


def fit_tokens(x: np.ndarray) -> tuple[dict, str]:
    """A token-length distribution for samples `x` (values below 1 count as 1) and how it was chosen."""
    x = np.maximum(np.asarray(x, dtype=np.float64), 1.0)
    qs = (50, 90, 99)
    target = np.percentile(x, qs)
    mean = float(x.mean())
    z = [statistics.NormalDist().inv_cdf(q / 100) for q in qs]
    logs = np.log(x)
    broad = (5, 10, 25, 50, 75, 90, 95, 99)
    broad_target = np.percentile(x, broad)
    broad_z = np.array([statistics.NormalDist().inv_cdf(q / 100) for q in broad])
    fits = []
    for how, median, sigma in (("maximum likelihood", math.exp(logs.mean()), float(logs.std())),
                               ("through p50 and p99", target[0], math.log(target[2] / target[0]) / z[2])):
        if sigma <= 0:
            continue
        pred = [median * math.exp(sigma * zq) for zq in z]
        if _close(pred, target, LOGNORMAL_TOLERANCE) and _close([median * math.exp(sigma**2 / 2)], [mean], 0.05):
            # of the fits that pass, keep the one closest over the whole body of the distribution
            miss = float(np.mean(np.abs(median * np.exp(sigma * broad_z) / broad_target - 1)))
            fits.append((miss, how, median, sigma))
    if fits:
        _, how, median, sigma = min(fits)
        return ({"dist": "lognormal", "median": round_sig(median), "sigma": round_sig(sigma)},
                f"lognormal ({how}): median {median:,.0f}, sigma {sigma:.3f}")
    distinct = np.unique(x)
    for points in (64, 128, 256, 512, 1024):
        if points >= len(distinct):
            break
        values, weights = _probit_grid(x, points)
        pred = [_weighted_quantile(values, weights, q / 100) for q in qs]
        pred_mean = float(np.dot(values, weights) / weights.sum())
        if _close(pred, target, TOKEN_FIT_TOLERANCE) and _close([pred_mean], [mean], TOKEN_FIT_TOLERANCE):
            return (_empirical(values, weights), f"empirical on {len(values)} quantiles "
                    "(no lognormal matched p50/p90/p99 within 4 %)")
    values, counts = np.unique(x, return_counts=True)
    return (_empirical(values, counts / counts.sum()),
            f"empirical on all {len(values)} distinct values (no coarser grid matched within 2 %)")


def _probit_grid(x: np.ndarray, points: int) -> tuple[np.ndarray, np.ndarray]:
    """Quantiles at probabilities evenly spaced in normal score (dense tails); equal values merged."""
    nd = statistics.NormalDist()
    z_max = min(3.7, nd.inv_cdf(1 - 0.5 / len(x)))
    z = np.linspace(-z_max, z_max, points)
    probs = np.array([nd.cdf(v) for v in z])
    mids = np.array([nd.cdf(v) for v in (z[:-1] + z[1:]) / 2])
    edges = np.concatenate([[0.0], mids, [1.0]])
    values = np.quantile(x, probs, method="inverted_cdf")
    weights = np.diff(edges)
    uniq, inverse = np.unique(values, return_inverse=True)
    return uniq, np.bincount(inverse, weights=weights)


def _empirical(values: np.ndarray, weights: np.ndarray) -> dict:
    w = weights / weights.sum()
    return {"dist": "empirical", "values": [int(round(v)) for v in values],
            "weights": [float(f"{v:.6g}") for v in w]}


def _expected_distinct(n: int, catalog: int, alpha: float, head: int = 100_000) -> float:
    """Expected distinct prompts in n independent Zipf(alpha) draws from `catalog` prompts.

    Exact sum over the first `head` ranks; the tail (ranks of tiny, smooth probability) is
    integrated on a geometric grid, so a catalog of millions costs milliseconds.
    """
    k = min(catalog, head)
    w = np.arange(1, k + 1, dtype=np.float64) ** -alpha
    total = w.sum()
    tail = 0.0
    if catalog > k:
        a, b = k + 0.5, catalog + 0.5
        total += math.log(b / a) if abs(alpha - 1) < 1e-12 else (b ** (1 - alpha) - a ** (1 - alpha)) / (1 - alpha)
        edges = np.geomspace(a, b, 4001)
        mids = np.sqrt(edges[:-1] * edges[1:])
        tail = float(np.sum(np.diff(edges) * -np.expm1(-n * mids**-alpha / total)))
    p = np.minimum(w / total, 1 - 1e-15)
    return float(np.sum(-np.expm1(n * np.log1p(-p)))) + tail


def fit_popularity(keys: np.ndarray) -> tuple[dict, str]:
    """A Zipf catalog whose expected number of distinct prompts in len(keys) draws matches the source.

    alpha comes from the slope of log count against log rank over prompts asked at least
    twice (0 when fewer than 10 repeat); the catalog size is then solved by bisection.
    """
    n = len(keys)
    _, counts = np.unique(keys, return_counts=True)
    distinct = len(counts)
    if distinct == n:
        return {}, "no prompt is repeated: every twin request is unique (catalog = 0)"
    repeated = np.sort(counts[counts >= 2])[::-1]
    alpha = 0.0
    if len(repeated) >= 10:
        ranks = np.arange(1, len(repeated) + 1)
        alpha = float(min(max(-np.polyfit(np.log(ranks), np.log(repeated), 1)[0], 0.0), 1.5))
    while alpha > 0 and _expected_distinct(n, MAX_CATALOG if alpha < 1 else 2_000_000, alpha) < distinct:
        alpha = max(0.0, alpha - 0.05)
    lo, hi = max(distinct, 1), MAX_CATALOG
    if _expected_distinct(n, hi, alpha) < distinct:
        return {}, "too few repeats to model with a catalog"
    while hi - lo > max(1, lo // 1000):
        mid = (lo + hi) // 2
        if _expected_distinct(n, mid, alpha) < distinct:
            lo = mid
        else:
            hi = mid
    prompts = {"catalog": int(hi), "popularity": {"dist": "zipf", "alpha": round(alpha, 3)}}
    return prompts, (f"{100 * (1 - distinct / n):.2f} % of requests repeat an earlier prompt: Zipf catalog of "
                     f"{hi:,} prompts, alpha {alpha:.2f} (from the {len(repeated):,} repeated prompts)")


@dataclass(frozen=True)
class PrefixFit:
    prefix: dict
    input_rest: np.ndarray            # input tokens after the shared prefix
    notes: list[str]
    source_share: float               # share of blocks an ideal cache reuses in the source


def fit_prefix(src: TrafficSource) -> PrefixFit | None:
    """Mooncake-style prefix blocks as `variants` system prompts of `system_tokens` tokens.

    Matches the share of blocks an unlimited prefix cache reuses and the mean time between
    reuses (a variant drawn at random per request is reused every `variants / rate` seconds).
    """
    if src.block_ids is None or src.block_tokens <= 0:
        return None
    bt = src.block_tokens
    reused = ideal_prefix_reuse(src.block_ids, src.block_offsets)
    n_blocks = np.diff(src.block_offsets)
    share = float(reused.sum() / max(n_blocks.sum(), 1))
    if share <= 0:
        return None
    gaps = reuse_gaps_s(src.t_arrival_s, src.block_ids, src.block_offsets, reused)
    weights = reused[reused > 0]
    mean_gap = float(np.average(gaps[reused > 0], weights=weights))
    n = len(src)
    variants = int(min(max(1, round(src.rate_per_s * mean_gap)), n))
    inp = src.input_tokens.astype(np.int64)
    cap_blocks = int(np.percentile(inp, 50) // bt)
    best = None
    for k in range(1, max(cap_blocks, 1) + 1):
        s_tokens = k * bt
        twin_blocks = -(-np.maximum(inp, s_tokens + 1) // bt)
        twin_share = k * max(n - variants, 0) / twin_blocks.sum()
        if best is None or abs(twin_share - share) < abs(best[1] - share):
            best = (s_tokens, twin_share)
    s_tokens, twin_share = best
    rest = np.maximum(inp - s_tokens, 1)
    short = float((inp <= s_tokens).mean())
    added = float((np.maximum(inp, s_tokens + 1).sum() - inp.sum()) / inp.sum())
    only_first = float((reused <= 1).mean())
    notes = [
        f"prefix reuse: an ideal prefix cache reuses {100 * share:.1f} % of the source's {bt}-token blocks; the "
        f"twin sends one of {variants:,} system prompts of {s_tokens:,} tokens at random "
        f"(reuses {100 * twin_share:.1f} %, one every {variants / src.rate_per_s:,.0f} s as the source's "
        f"reused blocks are, on average, every {mean_gap:,.0f} s)",
        "not represented: conversations whose every turn extends the previous prompt "
        f"({100 * only_first:.0f} % of source requests reuse at most one block, the rest many), the spread "
        "of reused lengths and their tie to prompt length",
        f"{100 * short:.1f} % of source prompts are shorter than the twin's prefix and become "
        f"{s_tokens + 1:,} tokens (+{100 * added:.1f} % input tokens overall; p50 and above are unchanged)",
    ]
    return PrefixFit({"system_tokens": int(s_tokens), "variants": variants, "block_tokens": int(bt)},
                     rest, notes, share)


def _shares(labels: np.ndarray | None, top: int = 20) -> list[dict] | None:
    if labels is None:
        return None
    counts = Counter(labels.tolist()).most_common()
    if len(counts) <= 1:
        return None
    kept = counts[:top]
    other = sum(c for _, c in counts[top:])
    out = [{"name": str(name), "weight": int(c)} for name, c in kept]
    if other:
        out.append({"name": "other", "weight": int(other)})
    return out


@dataclass
class Calibration:
    """A calibrated twin: the scenario (as a dict for TOML and validated), and why it is so."""

    scenario_dict: dict
    scenario: Scenario
    source: TrafficSource
    arrivals: ArrivalFit
    notes: list[str] = field(default_factory=list)

    def story(self) -> str:
        """A few lines for a scenario file's header: where the twin comes from and what it chose."""
        s = self.source
        lines = [f"Digital twin of {s.label}", f"calibrated by costlab twin from {len(s):,} requests over "
                 f"{s.span_s:,.0f} s ({s.rate_per_s:.3f} req/s).", ""]
        lines += [f"- {n}" for n in self.notes]
        return "\n".join(lines)


def fit(source, format: str | None = None, *, provider: str | None = None, model: str | None = None,
        concurrency: int | None = None, sla_p95_ms: float | None = None, name: str | None = None) -> Calibration:
    """Calibrate a twin from `source` and explain each choice (see the module docstring)."""
    src = load_source(source, format)
    if len(src) < 10 or src.span_s <= 0:
        raise TraceError(f"{src.label}: a twin needs at least 10 requests over a positive span, "
                         f"got {len(src)} over {src.span_s:g} s")
    notes: list[str] = []
    arr = fit_arrivals(src.t_arrival_s - src.t_arrival_s[0])
    notes.append(_arrival_note(arr))
    traffic: dict = {"arrivals": arr.chosen.arrivals}

    if src.prompt_key is not None:
        prompts, note = fit_popularity(src.prompt_key)
        notes.append(f"duplicates: {note}")
        if prompts:
            traffic["prompts"] = prompts
    elif src.duplicate_floor:
        notes.append(f"duplicates: the ledger has no prompt column; {100 * src.duplicate_floor:.1f} % of its "
                     "requests were cache hits or merged, a lower bound the twin does not model (catalog = 0)")
    else:
        notes.append("duplicates: the source does not identify prompts, so every twin request is unique")

    prefix = fit_prefix(src)
    input_for_fit = src.input_tokens
    if prefix is not None:
        traffic["prefix"] = prefix.prefix
        input_for_fit = prefix.input_rest
        notes.extend(prefix.notes)
    traffic["input_tokens"], note_in = fit_tokens(input_for_fit)
    traffic["output_tokens"], note_out = fit_tokens(src.output_tokens)
    what = "input tokens after the prefix" if prefix is not None else "input tokens"
    notes.append(f"{what}: {note_in}")
    notes.append(f"output tokens: {note_out}")
    if (np.asarray(src.output_tokens) < 1).any() or (np.asarray(src.input_tokens) < 1).any():
        notes.append("token counts of 0 in the source become 1 in the twin (every generated request has a token)")
    for key in ("tenant", "feature"):
        shares = _shares(getattr(src, key))
        if shares:
            traffic[f"{key}s"] = shares

    provider = provider or src.provider or DEFAULT_PROVIDER
    model = model or src.model or DEFAULT_MODEL
    prov: dict = {"name": provider, "model": model,
                  "concurrency": concurrency or _size_concurrency(arr.chosen.arrivals, src, provider, model)}
    data: dict = {"name": name or f"twin-{Path(src.label).stem}",
                  "description": f"digital twin of {Path(src.label).name}: {arr.chosen.label}",
                  "duration_s": round_sig(src.span_s, 9), "traffic": traffic, "providers": [prov]}
    if sla_p95_ms:
        data["sla"] = {"p95_ms": float(sla_p95_ms)}
    try:
        scenario = scenario_from_dict(data, path=f"<twin of {src.label}>")
    except CostlabError as exc:   # a calibration bug, not the user's: say what happened
        raise CostlabError(f"the calibrated twin did not validate: {exc}") from exc
    return Calibration(data, scenario, src, arr, notes)


def calibrate(source, format: str | None = None, **options) -> Scenario:
    """A Scenario that behaves like `source` (a trace path, Trace, ledger DataFrame or Result).

    Options: `provider`, `model` (default: the ledger's, else openai/gpt-4o-mini),
    `concurrency` (default: sized from the peak rate), `sla_p95_ms`, `name`.
    """
    return fit(source, format, **options).scenario


def _arrival_note(arr: ArrivalFit) -> str:
    obs = ", ".join(f"{w:g} s: {v:.2f}" for w, v in arr.observed.items())
    def short(c):
        p = c.arrivals["process"]
        return f"{len(c.arrivals['profile'])}-bucket profile" if p == "diurnal" else p

    tried = ", ".join(f"{short(c)} {'matches' if s <= 1 else f'{s:.1f}x off'}" for c, s in arr.tried)
    clock = (f" Timestamps come in {arr.resolution_s:g} s steps, so dispersion is measured from "
             f"{max(1.0, arr.resolution_s):g} s windows up." if arr.resolution_s > 1 else "")
    trend = " Dispersion keeps growing with the window (a trend), so rate profiles were tried before MMPP." \
        if arr.trend else ""
    return (f"arrivals: {arr.chosen.label}. Index of dispersion by window ({obs}).{clock}{trend} "
            f"Tried (mismatch in units of the allowance, <= 1 matches): {tried}.")


def _size_concurrency(arrivals: dict, src: TrafficSource, provider: str, model: str) -> int:
    """Enough slots for the peak rate with headroom: 2 x peak rate x mean service time + 8 (Little's law)."""
    info = model_info(provider, model)
    service_s = info.ttft_ms / 1000 + float(np.mean(src.output_tokens)) / info.tokens_per_s
    if arrivals["process"] == "mmpp":
        peak = arrivals["rate_high_per_s"]
    elif arrivals["process"] == "diurnal":
        peak = arrivals["rate_per_s"] * max(arrivals["profile"])
    else:
        peak = arrivals["rate_per_s"]
    return int(math.ceil(2 * peak * service_s)) + 8
