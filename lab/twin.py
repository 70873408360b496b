"""Digital twin: a scenario calibrated from real traffic, checked against it, then asked what-ifs.

    import lab.twin as twin
    fit = twin.fit("trace.csv", format="azure")         # the calibration and why it chose what it did
    scenario = twin.calibrate("trace.csv", format="azure")   # just the Scenario
    twin.validate(scenario, "trace.csv", format="azure", seeds=5)   # twin vs source, with errors
    runs = twin.what_if(scenario, {"cache": [{"stage": "cache", "ttl_s": 300}]}, seeds=5)
    twin.recommend(runs, sla_p95_ms=3000, quality_floor=0.95)

A source is a trace file (`format` "azure" | "mooncake" | "csv" | "ledger"), a
`lab.traces.Trace`, a ledger DataFrame (`Result.ledger`, or one read back from
`costlab run --ledger`) or a `Result`. What the twin takes from it:

- **Arrivals.** The rate profile and burstiness are read from the index of dispersion
  (variance / mean of counts per window) over windows from the trace's timestamp resolution
  (at least 1 s) to a twentieth of its span. Candidate processes are tried simplest first
  and the first whose dispersion curve matches within 15 % (or within sampling noise) at
  every window wins: `poisson` (flat), `diurnal` with a `profile` of K equal buckets over the
  trace span (`period_s` = span; K = 6 ... 192, shrunk toward the mean so Poisson noise in
  the counts is not mistaken for rate changes), or `mmpp` fitted by moments (mean rate,
  the dispersion curve's plateau and time constant, the skewness of short-window counts).
  When dispersion still grows at the longest windows (a trend), profiles are tried before
  MMPP, otherwise MMPP first.
- **Token lengths.** A lognormal (maximum likelihood, or one through p50 and p99, whichever
  is closer over the body of the distribution) when it reproduces p50, p90, p99 within 4 %
  and the mean within 5 %; otherwise an empirical
  distribution on quantiles spaced evenly in normal-score space (dense in the tails), the
  coarsest whose p50/p90/p99 and mean are within 2 %.
- **Duplicates.** Where the source identifies prompts (Mooncake: identical `hash_ids` and
  length; a generic CSV or ledger with a `prompt` column), a Zipf catalog whose expected
  number of distinct prompts matches. A ledger without prompts gives only a lower bound
  (the share the pipeline answered from cache or merged).
- **Prefix reuse.** Mooncake's `hash_ids` become `[traffic.prefix]`: `variants` system
  prompts of `system_tokens` each, matching the share of input tokens an ideal unlimited
  prefix cache reuses and the mean time between reuses. The notes say what this loses.

Live cassettes (`lab.live`) are not a source yet: they raise a ConfigError saying so.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lab.errors import ConfigError, CostlabError, TraceError
from lab.loader import scenario_from_dict
from lab.scenario import Scenario
from lab.tables import ResultTable, fmt_number

SOURCE_FORMATS = ("azure", "mooncake", "csv", "ledger", "cassette")
DEFAULT_PROVIDER, DEFAULT_MODEL = "openai", "gpt-4o-mini"
IDC_TOLERANCE = 0.15          # relative: the dispersion curve a candidate must match
IDC_NOISE_Z = 2.5             # ...or be within this many sampling standard deviations
PROFILE_BUCKETS = (6, 12, 24, 48, 96, 192)
MIN_PER_BUCKET = 20           # a profile bucket must hold at least this many arrivals on average
WINDOW_STEPS = (1, 3, 10, 30, 100, 300, 1000, 3000, 10000, 30000)
TOKEN_FIT_TOLERANCE = 0.02    # empirical: p50/p90/p99 and mean
LOGNORMAL_TOLERANCE = 0.04    # lognormal: p50/p90/p99 (mean within 5 %); leaves 1 % for sampling
MAX_CATALOG = 20_000_000


# =========================================================================== the source


@dataclass
class TrafficSource:
    """Observed traffic in one shape, whatever it came from (arrival times start at 0)."""

    label: str
    t_arrival_s: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    prompt_key: np.ndarray | None = None      # int64 identity of the exact prompt, when known
    duplicate_floor: float | None = None      # a ledger without prompts: a lower bound on duplicates
    block_ids: np.ndarray | None = None       # Mooncake prefix blocks (flat) and their offsets
    block_offsets: np.ndarray | None = None
    block_tokens: int = 0
    tenant: np.ndarray | None = None
    feature: np.ndarray | None = None
    provider: str | None = None               # a ledger names who served it
    model: str | None = None

    def __len__(self) -> int:
        return len(self.t_arrival_s)

    @property
    def span_s(self) -> float:
        return float(self.t_arrival_s[-1] - self.t_arrival_s[0]) if len(self) else 0.0

    @property
    def rate_per_s(self) -> float:
        return len(self) / self.span_s if self.span_s > 0 else math.nan


def load_source(source, format: str | None = None) -> TrafficSource:
    """Read a trace path, Trace, ledger DataFrame or Result into a TrafficSource."""
    from lab.traces import Trace

    if isinstance(source, TrafficSource):
        return source
    if isinstance(source, Trace):
        return _from_trace(source)
    if isinstance(source, pd.DataFrame):
        return _from_ledger(source, "ledger")
    if hasattr(source, "ledger") and hasattr(source, "summary"):   # a lab.Result
        return _from_ledger(source.ledger, f"ledger of {source.summary()['scenario']}")
    if isinstance(source, (str, Path)):
        return _from_path(Path(source), format)
    raise ConfigError(f"twin source: expected a trace path, a Trace, a ledger DataFrame or a Result, "
                      f"got {type(source).__name__}")


def guess_format(path: Path) -> str:
    """The trace format from the file's name and first line (Azure and ledger CSVs have telltale headers)."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return "ledger"
    if suffix in (".jsonl", ".json"):
        return "mooncake"
    try:
        with open(path, encoding="utf-8-sig") as fh:
            header = fh.readline()
    except OSError as exc:
        raise TraceError(f"{path}: cannot read the trace file ({exc.strerror or exc})") from None
    if "TIMESTAMP" in header and "ContextTokens" in header:
        return "azure"
    if "request_id" in header and "outcome" in header:
        return "ledger"
    return "csv"


def _from_path(path: Path, format: str | None) -> TrafficSource:
    from lab.traces import read_trace

    if format is None:
        if not path.is_file():
            raise TraceError(f"{path}: no such trace file")
        format = guess_format(path)
    if format not in SOURCE_FORMATS:
        raise ConfigError(f"trace format: expected one of {', '.join(SOURCE_FORMATS)}, got {format!r}")
    if format == "cassette":
        raise ConfigError(f"{path}: calibrating a twin from a live cassette is not supported yet; export its "
                          "calls as a generic CSV (t_arrival_s,input_tokens,output_tokens) and use --format csv")
    if format == "ledger":
        try:
            df = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path)
        except FileNotFoundError:
            raise TraceError(f"{path}: no such ledger file") from None
        except (ValueError, OSError) as exc:
            raise TraceError(f"{path}: cannot read the ledger ({exc})") from None
        return _from_ledger(df, str(path))
    src = _from_trace(read_trace(path, format))
    if format == "csv":
        src.prompt_key = _csv_prompt_column(path, len(src))
    return src


def _from_trace(tr) -> TrafficSource:
    src = TrafficSource(label=str(tr.path), t_arrival_s=np.asarray(tr.t_arrival_s, dtype=np.float64),
                        input_tokens=np.asarray(tr.input_tokens), output_tokens=np.asarray(tr.output_tokens),
                        tenant=tr.tenant, feature=tr.feature)
    if tr.block_ids is not None:
        src.block_ids, src.block_offsets, src.block_tokens = tr.block_ids, tr.block_offsets, tr.block_tokens
        src.prompt_key = _block_prompt_keys(tr.block_ids, tr.block_offsets, tr.input_tokens)
    return src


def _block_prompt_keys(ids: np.ndarray, offsets: np.ndarray, input_tokens: np.ndarray) -> np.ndarray:
    """Same blocks and same length = the same prompt (Mooncake's duplicate requests)."""
    keys: dict[tuple, int] = {}
    out = np.empty(len(offsets) - 1, dtype=np.int64)
    for i in range(len(out)):
        k = (int(input_tokens[i]), ids[offsets[i]:offsets[i + 1]].tobytes())
        out[i] = keys.setdefault(k, len(keys))
    return out


def _csv_prompt_column(path: Path, n: int) -> np.ndarray | None:
    """A generic CSV's optional `prompt` column (text or hash) as integer keys, if the file has one."""
    import pyarrow.csv as pa_csv

    with open(path, encoding="utf-8-sig") as fh:
        header = [h.strip() for h in fh.readline().split(",")]
    if "prompt" not in header:
        return None
    try:
        table = pa_csv.read_csv(path, convert_options=pa_csv.ConvertOptions(
            include_columns=["prompt", "t_arrival_s"], column_types={"prompt": "string"}))
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types; the message names the cause
        raise TraceError(f"{path}: cannot read the prompt column ({exc})") from None
    if table.num_rows != n:
        raise TraceError(f"{path}: the prompt column has {table.num_rows} rows, the trace {n}: "
                         "read it without skip_bad_rows or fix the bad rows")
    t = table.column("t_arrival_s").to_numpy()
    prompts = np.asarray(table.column("prompt").to_pylist(), dtype=object)[np.argsort(t, kind="stable")]
    _, keys = np.unique(prompts.astype(str), return_inverse=True)
    return keys.astype(np.int64)


def _from_ledger(df: pd.DataFrame, label: str) -> TrafficSource:
    missing = [c for c in ("t_arrival_s", "input_tokens", "output_tokens") if c not in df.columns]
    if missing:
        raise ConfigError(f"{label}: a ledger needs columns t_arrival_s, input_tokens, output_tokens; "
                          f"missing {', '.join(missing)}")
    if len(df) < 2:
        raise TraceError(f"{label}: the ledger holds {len(df)} request(s); a twin needs at least 2")
    order = np.argsort(df["t_arrival_s"].to_numpy(dtype=np.float64), kind="stable")
    d = df.iloc[order]
    t = d["t_arrival_s"].to_numpy(dtype=np.float64)
    src = TrafficSource(label=label, t_arrival_s=t - t[0],
                        input_tokens=d["input_tokens"].to_numpy(dtype=np.int64),
                        output_tokens=d["output_tokens"].to_numpy(dtype=np.int64))
    for col in ("tenant", "feature"):
        if col in d.columns:
            setattr(src, col, d[col].astype(str).to_numpy(dtype=object))
    if "prompt" in d.columns:
        _, keys = np.unique(d["prompt"].astype(str).to_numpy(), return_inverse=True)
        src.prompt_key = keys.astype(np.int64)
    elif "outcome" in d.columns:
        repeats = d["outcome"].astype(str).isin(["cache_hit", "deduplicated"]).mean()
        src.duplicate_floor = float(repeats)
    if "provider" in d.columns and "model" in d.columns:
        served = d[d["provider"].astype(str) != "none"]
        if len(served):
            pair = Counter(zip(served["provider"].astype(str), served["model"].astype(str))).most_common(1)[0][0]
            src.provider, src.model = pair
    return src


# =========================================================================== statistics of traffic


def dispersion_index(t_s: np.ndarray, window_s: float, span_s: float | None = None) -> float:
    """Variance / mean of arrival counts in consecutive windows of `window_s` (whole windows only).

    1 for a Poisson process; larger when arrivals clump. Per-second counts (window 1 s) are the
    figure the shipped trace README quotes (1.39 for Azure conv).
    """
    span_s = float(t_s[-1]) if span_s is None else span_s
    m = int(span_s // window_s)
    if m < 2:
        return math.nan
    counts = np.bincount((t_s[t_s < m * window_s] // window_s).astype(np.int64), minlength=m)[:m]
    mean = counts.mean()
    return float(counts.var(ddof=1) / mean) if mean > 0 else math.nan


def timestamp_resolution_s(t_s: np.ndarray) -> float:
    """The step of a trace's clock when most arrivals share a timestamp (Mooncake: 3 s), else 0."""
    distinct = np.unique(t_s)
    if len(distinct) < 3 or len(distinct) > 0.5 * len(t_s):
        return 0.0
    return float(np.median(np.diff(distinct)))


def ideal_prefix_reuse(block_ids: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per request, how many leading blocks an unlimited, never-expiring prefix cache already holds."""
    seen: set[int] = set()
    reused = np.zeros(len(offsets) - 1, dtype=np.int64)
    for i in range(len(reused)):
        blocks = block_ids[offsets[i]:offsets[i + 1]].tolist()
        k = 0
        for b in blocks:
            if b not in seen:
                break
            k += 1
        reused[i] = k
        seen.update(blocks)
    return reused


def _reuse_gaps_s(t: np.ndarray, block_ids: np.ndarray, offsets: np.ndarray, reused: np.ndarray) -> np.ndarray:
    """For each request that reuses blocks, seconds since its last reused block was last sent."""
    last_seen: dict[int, float] = {}
    gaps = np.full(len(reused), np.nan)
    for i in range(len(reused)):
        blocks = block_ids[offsets[i]:offsets[i + 1]].tolist()
        if reused[i]:
            gaps[i] = t[i] - last_seen[blocks[reused[i] - 1]]
        for b in blocks:
            last_seen[b] = t[i]
    return gaps


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


def duplicate_rate(keys: np.ndarray) -> float:
    """Share of requests whose exact prompt was asked before."""
    return 1.0 - len(np.unique(keys)) / len(keys) if len(keys) else 0.0


# =========================================================================== arrival models


@dataclass(frozen=True)
class ArrivalCandidate:
    """One arrival model: its scenario table and the dispersion it predicts at each window."""

    label: str
    arrivals: dict
    idc: dict            # window_s -> predicted index of dispersion


def _windows(span_s: float, base_s: float) -> list[float]:
    """Evaluation windows: multiples of the base window, up to a twentieth of the span."""
    out = [base_s * k for k in WINDOW_STEPS if base_s * k <= span_s / 20]
    return out or [base_s]


def _profile_idc(rates: np.ndarray, span_s: float, window_s: float) -> float:
    """Index of dispersion of counts in `window_s` windows of a Poisson process with piecewise rates."""
    m = int(span_s // window_s)
    edges = np.linspace(0.0, span_s, len(rates) + 1)
    cumulative = np.concatenate([[0.0], np.cumsum(rates * np.diff(edges))])
    expected = np.diff(np.interp(np.arange(m + 1) * window_s, edges, cumulative))
    return float(1.0 + expected.var(ddof=0) / expected.mean())


def _mmpp_idc(rho: float, a: float, window_s: float) -> float:
    """MMPP-2 index of dispersion at window t: 1 + A (1 - (1 - e^{-rho t}) / (rho t))."""
    x = rho * window_s
    return 1.0 + a * (1.0 - (-math.expm1(-x)) / x)


def _profile_candidate(t: np.ndarray, span_s: float, k: int, windows: list[float]) -> ArrivalCandidate:
    counts = np.bincount(np.minimum((t / span_s * k).astype(np.int64), k - 1), minlength=k).astype(float)
    mean = counts.mean()
    d = counts.var(ddof=1) / mean if k > 1 else 1.0
    shrink = math.sqrt(max(0.0, 1.0 - 1.0 / d)) if d > 0 else 0.0    # keep only the rate variance beyond noise
    smooth = mean + shrink * (counts - mean)
    rates = smooth / (span_s / k)
    rate = len(t) / span_s
    profile = [float(f"{v:.4g}") for v in smooth / mean]
    arrivals = {"process": "diurnal", "rate_per_s": _sig(rate), "profile": profile, "period_s": _sig(span_s, 9)}
    return ArrivalCandidate(f"diurnal profile, {k} buckets of {span_s / k:,.0f} s", arrivals,
                            {w: _profile_idc(rates, span_s, w) for w in windows})


def fit_mmpp(t: np.ndarray, span_s: float, windows: list[float], observed: dict) -> ArrivalCandidate | None:
    """Two-state MMPP by moments: mean rate; plateau A and time constant 1/rho of the dispersion
    curve (least squares over the windows); share of time in the busy state from the skewness of
    short-window counts (a two-point mixed Poisson). None when the counts show no burstiness."""
    rate = len(t) / span_s
    w = np.asarray(windows)
    y = np.asarray([observed[x] for x in windows])
    if not np.all(np.isfinite(y)) or y.max() <= 1.0:
        return None
    # relative residuals weighted by their sampling noise: a window of w has span / w counts,
    # and the relative standard error of a variance from m counts is about sqrt(2 / (m - 1))
    m = np.floor(span_s / w)
    inv_var = (m - 1) / 2.0
    best = None
    for rho in np.geomspace(0.01 / span_s, 10.0 / w[0], 600):
        g = 1.0 - (-np.expm1(-rho * w)) / (rho * w)
        a = float(np.sum(inv_var * g * (y - 1) / y**2) / np.sum(inv_var * g**2 / y**2))
        if a <= 0:
            continue
        err = float(np.sum(inv_var * ((1 + a * g) / y - 1) ** 2))
        if best is None or err < best[0]:
            best = (err, rho, a)
    if best is None:
        return None
    _, rho, a = best
    p = _busy_share(t, span_s, windows, rho)
    delta = math.sqrt(a * rho * rate / (2 * p * (1 - p)))
    low = rate - p * delta
    if low < 0:                        # on/off: the quiet state sends nothing
        p = 2 * rate / (a * rho + 2 * rate)
        delta = math.sqrt(a * rho * rate / (2 * p * (1 - p)))
        low = 0.0
    arrivals = {"process": "mmpp", "rate_high_per_s": _sig(low + delta), "rate_low_per_s": _sig(low),
                "mean_high_s": _sig(1 / (rho * (1 - p))), "mean_low_s": _sig(1 / (rho * p))}
    return ArrivalCandidate("mmpp (two-state, fitted by moments)", arrivals,
                            {x: _mmpp_idc(rho, a, x) for x in windows})


def _busy_share(t: np.ndarray, span_s: float, windows: list[float], rho: float) -> float:
    """Share of time in the busy state: skewness of the rate behind counts in short windows.

    For a mixed Poisson count with mixing X: Var X = Var c - E c and the third central moment
    mu3(X) = mu3(c) - 3 Var c + 2 E c; a two-point X with weight p on the high value has
    skewness (1 - 2p) / sqrt(p (1 - p)).
    """
    short = [w for w in windows if rho * w <= 0.3] or windows[:1]
    w = short[-1]
    m = int(span_s // w)
    c = np.bincount((t[t < m * w] // w).astype(np.int64), minlength=m)[:m].astype(float)
    mean, var = c.mean(), c.var()
    mu3 = float(np.mean((c - mean) ** 3))
    var_x = var - mean
    if var_x <= 0:
        return 0.5
    skew = (mu3 - 3 * var + 2 * mean) / var_x**1.5
    p = 0.5 * (1 - skew / math.sqrt(4 + skew * skew))
    return float(min(max(p, 0.02), 0.98))


def _sig(x: float, digits: int = 6) -> float:
    return float(f"{x:.{digits}g}")


@dataclass(frozen=True)
class ArrivalFit:
    """The chosen arrival model, the dispersion it was judged on and every candidate tried."""

    chosen: ArrivalCandidate
    observed: dict                    # window_s -> observed index of dispersion
    tried: list[tuple[ArrivalCandidate, float]]    # (candidate, score); score <= 1 matches
    resolution_s: float
    trend: bool


def _score(c: ArrivalCandidate, observed: dict, span_s: float) -> float:
    """Worst mismatch over windows, in units of what is allowed (<= 1 accepts)."""
    worst = 0.0
    for w, obs in observed.items():
        pred = c.idc[w]
        m = int(span_s // w)
        noise = IDC_NOISE_Z * pred * math.sqrt(2.0 / max(m - 1, 1))
        worst = max(worst, abs(pred - obs) / max(IDC_TOLERANCE * obs, noise))
    return worst


def fit_arrivals(t: np.ndarray) -> ArrivalFit:
    """Choose poisson, diurnal (rate profile) or mmpp for arrival times `t` (seconds from 0)."""
    span = float(t[-1])
    n = len(t)
    if n < 10 or span <= 0:
        raise TraceError(f"a twin needs at least 10 requests over a positive span, got {n} over {span:g} s")
    resolution = timestamp_resolution_s(t)
    base = max(1.0, resolution)
    windows = _windows(span, base)
    # a clock that ticks every few seconds: centre each tick in its window so jitter of a few
    # milliseconds around the tick does not split a tick's arrivals between two windows
    t_counted = t + resolution / 2 if resolution > 0 else t
    observed = {w: dispersion_index(t_counted, w, span) for w in windows}
    rate = n / span
    poisson = ArrivalCandidate("poisson", {"process": "poisson", "rate_per_s": _sig(rate)},
                               {w: 1.0 for w in windows})
    profiles = [_profile_candidate(t, span, k, windows) for k in PROFILE_BUCKETS
                if n / k >= MIN_PER_BUCKET and span / k >= base]
    mmpp = fit_mmpp(t, span, windows, observed)
    longest, shortest = observed[windows[-1]], observed[windows[0]]
    earlier = observed[windows[-3]] if len(windows) >= 3 else longest
    noise = IDC_NOISE_Z * longest * math.sqrt(2.0 / max(span // windows[-1] - 1, 1))
    trend = len(windows) >= 3 and longest - noise > 1.5 * earlier and longest > 1.5 * shortest
    order = [poisson] + (profiles + [mmpp] if trend else [mmpp] + profiles)
    tried = []
    for c in order:
        if c is None:
            continue
        score = _score(c, observed, span)
        tried.append((c, score))
        if score <= 1.0:
            return ArrivalFit(c, observed, tried, resolution, trend)
    best = min(tried, key=lambda cs: cs[1])[0]
    return ArrivalFit(best, observed, tried, resolution, trend)


# =========================================================================== token lengths


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
        return ({"dist": "lognormal", "median": _sig(median), "sigma": _sig(sigma)},
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


# =========================================================================== prompts and prefixes


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
    gaps = _reuse_gaps_s(src.t_arrival_s, src.block_ids, src.block_offsets, reused)
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


# =========================================================================== calibration


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
                  "duration_s": _sig(src.span_s, 9), "traffic": traffic, "providers": [prov]}
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
    from lab.models import model_info

    info = model_info(provider, model)
    service_s = info.ttft_ms / 1000 + float(np.mean(src.output_tokens)) / info.tokens_per_s
    if arrivals["process"] == "mmpp":
        peak = arrivals["rate_high_per_s"]
    elif arrivals["process"] == "diurnal":
        peak = arrivals["rate_per_s"] * max(arrivals["profile"])
    else:
        peak = arrivals["rate_per_s"]
    return int(math.ceil(2 * peak * service_s)) + 8


# =========================================================================== validation


@dataclass(frozen=True)
class Check:
    metric: str
    tolerance: float | None      # relative; None: shown, not judged


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
    from lab.pricing import model_prices
    from lab.projections import mean_ci, seed_list
    from lab.traffic import make_requests

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
        mean, half = mean_ci([r[metric] for r in twin_runs])
        ref = source_stats[metric]
        err = (mean - ref) / ref if ref else (0.0 if mean == 0 else math.inf)
        rows.append({"metric": metric, "source": ref, "twin": mean, "twin_ci95": half,
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
    fmt = {"metric": str, "rel_error": lambda x: f"{100 * x:+.1f} %",
           "tolerance": lambda x: "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"±{100 * x:g} %",
           "ok": lambda x: "-" if x is None or (isinstance(x, float) and math.isnan(x)) else ("yes" if x else "NO"),
           "twin_ci95": lambda x: fmt_number(x, 2)}
    return ResultTable(f"Twin vs source · {Path(src.label).name}", table, notes, fmt)


def _checks(windows, resolution_s: float) -> list[tuple[str, float | None]]:
    out = [("requests", 0.05), ("rate_per_s", 0.05)]
    for name in ("input", "output"):
        out += [(f"{name}_tokens_p50", 0.05), (f"{name}_tokens_p90", 0.05), (f"{name}_tokens_p99", 0.05),
                (f"{name}_tokens_mean", 0.05)]
    out += [(f"dispersion_{w:g}s", 0.25 if w >= resolution_s else None) for w in windows]
    out += [("duplicate_rate", 0.25), ("prefix_reuse_share", 0.10), ("cost_usd_per_hour", 0.05)]
    return out


# =========================================================================== what-if and recommendation


def _pipeline(stages: list[dict], label: str) -> tuple:
    """Validate a policy's stage dicts exactly as `[[pipeline]]` tables are validated."""
    from lab.config import Table
    from lab.stages import parse_stage

    if not isinstance(stages, (list, tuple)):
        raise ConfigError(f"policy {label!r}: expected a list of stage tables, got {type(stages).__name__}")
    return tuple(parse_stage(Table(f"<policy {label}>", f"pipeline[{k}]", dict(s))) for k, s in enumerate(stages))


@dataclass
class WhatIf:
    """Runs of one twin under several pipelines: per-seed numbers and the summary table."""

    twin: Scenario
    runs: dict                      # policy name -> list[SeedRun]
    per_day: float                  # requests per day the costs are scaled to
    result: ResultTable

    @property
    def table(self) -> pd.DataFrame:
        return self.result.table

    def __str__(self) -> str:
        return str(self.result)

    def _repr_html_(self) -> str:
        return self.result._repr_html_()


def what_if(twin: Scenario, policies, seeds=5, requests: int | None = None) -> WhatIf:
    """Replay `twin` under each policy (name -> list of `[[pipeline]]` stage dicts) on the same seeds.

    A policy named "none" (no stages) is added when missing, so there is always a baseline row.
    Every policy sees the same request streams (same seeds), so differences are the pipeline's.
    """
    from lab.projections import mean_ci, requests_per_day, run_seeds

    if isinstance(policies, (list, tuple)):
        policies = {f"policy {k + 1}": p for k, p in enumerate(policies)}
    policies = dict(policies)
    if not any(len(p) == 0 for p in policies.values()):
        policies = {"none": [], **policies}
    per_day = requests_per_day(twin)
    runs = {}
    for name, stages in policies.items():
        runs[name] = run_seeds(twin.replace(pipeline=_pipeline(stages, name), name=f"{twin.name} · {name}"),
                               seeds, requests)
    rows = []
    for name, rs in runs.items():
        cost, cost_h = mean_ci([r.cost_per_request_usd * per_day for r in rs])
        red, _ = mean_ci([100 * (1 - r.cost_usd / r.baseline_cost_usd) if r.baseline_cost_usd else 0.0
                          for r in rs])
        p95, p95_h = mean_ci([r.p95_ms for r in rs])
        q, q_h = mean_ci([r.quality_mean for r in rs])
        rows.append({"policy": name, "cost_usd_per_day": cost, "cost_ci95": cost_h, "reduction_pct": red,
                     "p95_ms": p95, "p95_ci95": p95_h, "quality": q, "quality_ci95": q_h,
                     "sla_violation_rate": float(np.mean([r.sla_violation_rate for r in rs])),
                     "error_rate": float(np.mean([r.error_rate for r in rs]))})
    from lab.projections import _pct, _usd

    fmt = {"policy": str, "cost_usd_per_day": _usd, "cost_ci95": _usd, "reduction_pct": lambda x: f"{x:.1f} %",
           "p95_ci95": lambda x: fmt_number(x, 2), "quality": lambda x: f"{x:.3f}",
           "quality_ci95": lambda x: fmt_number(x, 2), "sla_violation_rate": _pct, "error_rate": _pct}
    n_seeds = len(next(iter(runs.values())))
    result = ResultTable(f"What if · {twin.name}", pd.DataFrame(rows),
                         [f"{n_seeds} seeds per policy (the same request streams for every policy); "
                          f"± is a 95 % t interval; cost per day at {per_day:,.0f} requests/day"], fmt)
    return WhatIf(twin, runs, per_day, result)


def recommend(whatif: WhatIf, sla_p95_ms: float | None = None, quality_floor: float = 0.0) -> ResultTable:
    """Rank the policies by cost among those meeting the SLA (p95) and the quality floor, and say why.

    `sla_p95_ms` defaults to the twin's `[sla] p95_ms` (0: no SLA). A policy whose interval
    straddles a limit is flagged: more seeds would settle it.
    """
    sla = whatif.twin.sla.p95_ms if sla_p95_ms is None else sla_p95_ms
    t = whatif.table.copy()
    t["meets_sla"] = (t["p95_ms"] <= sla) if sla else True
    t["meets_quality"] = t["quality"] >= quality_floor
    t["feasible"] = t["meets_sla"] & t["meets_quality"]
    t = t.sort_values(["feasible", "cost_usd_per_day"], ascending=[False, True]).reset_index(drop=True)
    t.insert(0, "rank", np.arange(1, len(t) + 1))
    none = t[t["policy"] == "none"]
    base = float(none["cost_usd_per_day"].iloc[0]) if len(none) else math.nan
    notes = _explain(t, sla, quality_floor, base, whatif)
    cols = ["rank", "policy", "cost_usd_per_day", "cost_ci95", "reduction_pct", "p95_ms", "quality", "feasible"]
    fmt = dict(whatif.result.formats)
    fmt.update({"rank": lambda x: str(int(x)), "feasible": lambda x: "yes" if x else "no"})
    limits = (f"p95 <= {sla:,.0f} ms" if sla else "no SLA") + f", quality >= {quality_floor:g}"
    return ResultTable(f"Recommendation · {whatif.twin.name} ({limits})", t[cols], notes, fmt)


def _paired_gap(whatif: WhatIf, a: str, b: str) -> tuple[float, float]:
    """Mean and 95 % half-width of cost(b) - cost(a) per day, paired by seed (same request streams)."""
    from lab.projections import mean_ci

    diffs = [(rb.cost_per_request_usd - ra.cost_per_request_usd) * whatif.per_day
             for ra, rb in zip(whatif.runs[a], whatif.runs[b])]
    return mean_ci(diffs)


def _explain(t: pd.DataFrame, sla: float, floor: float, base: float, whatif: WhatIf) -> list[str]:
    from lab.projections import _usd

    def money(row):
        ci = "" if math.isnan(row.cost_ci95) else f" (± {_usd(row.cost_ci95)})"
        return f"{_usd(row.cost_usd_per_day)}/day{ci}"

    feasible = t[t["feasible"]]
    notes = []
    if feasible.empty:
        notes.append("No policy meets both the SLA and the quality floor; the cheapest is listed first among "
                     "the infeasible ones. Loosen a limit, add capacity, or try other stages.")
    else:
        best = feasible.iloc[0]
        saving = (f", {100 * (1 - best.cost_usd_per_day / base):.1f} % less than no optimization "
                  f"({_usd(base)}/day)") if base and not math.isnan(base) and best.policy != "none" else ""
        sla_txt = f"its p95 latency {best.p95_ms:,.0f} ms is within the {sla:,.0f} ms SLA" if sla else \
            f"its p95 latency is {best.p95_ms:,.0f} ms (no SLA given)"
        notes.append(f"Recommended: {best.policy!r} at {money(best)}{saving}; {sla_txt} and its mean quality "
                     f"{best.quality:.3f} meets the {floor:g} floor.")
        if len(feasible) > 1:
            second = feasible.iloc[1]
            gap, half = _paired_gap(whatif, best.policy, second.policy)
            if not gap - half > 0:
                notes.append(f"{second.policy!r} costs only {_usd(gap)}/day more (paired by seed, 95 % interval "
                             f"± {_usd(half)}): the two are not separated; run more seeds before choosing on "
                             "cost alone.")
    for row in t.itertuples():
        if row.feasible and not feasible.empty and row.policy == feasible.iloc[0].policy:
            continue
        reasons = []
        if not row.meets_sla:
            reasons.append(f"misses the SLA (p95 {row.p95_ms:,.0f} ms > {sla:,.0f} ms)")
        if not row.meets_quality:
            reasons.append(f"falls below the quality floor (mean quality {row.quality:.3f} < {floor:g})")
        cheaper = not feasible.empty and row.cost_usd_per_day < feasible.iloc[0].cost_usd_per_day
        if reasons:
            lead = "would be cheaper at" if cheaper else "costs"
            notes.append(f"{row.policy!r} {lead} {money(row)} but {' and '.join(reasons)}.")
        elif not feasible.empty:
            extra = row.cost_usd_per_day - feasible.iloc[0].cost_usd_per_day
            notes.append(f"{row.policy!r} meets both limits at {money(row)}, {_usd(extra)}/day more.")
        near = []
        if sla and abs(row.p95_ms - sla) <= np.nan_to_num(row.p95_ci95):
            near.append(f"p95 {row.p95_ms:,.0f} ± {row.p95_ci95:,.0f} ms against the {sla:,.0f} ms SLA")
        if abs(row.quality - floor) <= np.nan_to_num(row.quality_ci95) and row.quality_ci95 > 0:
            near.append(f"quality {row.quality:.3f} ± {row.quality_ci95:.3f} against the {floor:g} floor")
        if near:
            notes.append(f"{row.policy!r} is within the seed noise of a limit ({'; '.join(near)}): "
                         "more seeds would settle which side it falls on.")
    return notes
