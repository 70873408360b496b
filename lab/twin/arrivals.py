"""The arrival process of a twin: poisson, a diurnal rate profile or a two-state MMPP, chosen by dispersion.

The rate profile and burstiness are read from the index of dispersion (variance / mean of
counts per window) over windows from the trace's timestamp resolution (at least 1 s) to a
twentieth of its span. Candidate processes are tried simplest first and the first whose
dispersion curve matches within 15 % (or within sampling noise) at every window wins:
`poisson` (flat), `diurnal` with a `profile` of K equal buckets over the trace span
(`period_s` = span; K = 6 ... 192, shrunk toward the mean so Poisson noise in the counts is
not mistaken for rate changes), or `mmpp` fitted by moments (mean rate, the dispersion
curve's plateau and time constant, the skewness of short-window counts). When dispersion
still grows at the longest windows (a trend), profiles are tried before MMPP, otherwise
MMPP first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lab.errors import TraceError
from lab.twin.measures import dispersion_index, timestamp_resolution_s

IDC_TOLERANCE = 0.15          # relative: the dispersion curve a candidate must match
IDC_NOISE_Z = 2.5             # ...or be within this many sampling standard deviations
PROFILE_BUCKETS = (6, 12, 24, 48, 96, 192)
MIN_PER_BUCKET = 20           # a profile bucket must hold at least this many arrivals on average
WINDOW_STEPS = (1, 3, 10, 30, 100, 300, 1000, 3000, 10000, 30000)


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
    arrivals = {"process": "diurnal", "rate_per_s": round_sig(rate), "profile": profile, "period_s": round_sig(span_s, 9)}
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
    arrivals = {"process": "mmpp", "rate_high_per_s": round_sig(low + delta), "rate_low_per_s": round_sig(low),
                "mean_high_s": round_sig(1 / (rho * (1 - p))), "mean_low_s": round_sig(1 / (rho * p))}
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


def round_sig(x: float, digits: int = 6) -> float:
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
    poisson = ArrivalCandidate("poisson", {"process": "poisson", "rate_per_s": round_sig(rate)},
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
