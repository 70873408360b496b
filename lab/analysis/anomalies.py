"""Anomaly detection on cost per time bucket, and a way to measure it.

Two detectors, both judging each bucket only against the buckets before it (so they work
as data streams in). Cost follows the daily cycle, so "normal" is not the window's mean: a
least-squares line through the previous `window` buckets predicts the next one
(`detrend=True`, the default) and the detectors judge the residual:

- **rolling z-score**: (x - predicted) / sd of the window's residuals; anomalous above
  `threshold` (4 by default).
- **rolling IQR** (Tukey's fences): anomalous above predicted + Q3 + k * IQR of the
  window's residuals (k = 3, Tukey's "far out").

A bucket found anomalous is clipped to the fence it crossed in the history later buckets
are judged against, so a spike neither inflates the spread nor drags the line far, while a
real change of level still moves the line (replacing it by the prediction instead would
let a run of flags extrapolate the line forever).
`measure_detector` injects spikes into synthetic seasonal series and reports precision and
recall; the numbers are stated in tests/test_analysis_anomalies.py and the README.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lab.analysis.frame import cost_series
from lab.errors import ConfigError


def _values(series) -> tuple[np.ndarray, pd.Index]:
    if isinstance(series, pd.Series):
        return series.to_numpy(np.float64), series.index
    arr = np.asarray(series, dtype=np.float64)
    return arr, pd.RangeIndex(len(arr))


def _line(window: int) -> tuple[np.ndarray, np.ndarray]:
    """Weights giving a least-squares line through `window` points, evaluated one step past them."""
    t = np.arange(window, dtype=np.float64)
    design = np.column_stack([np.ones(window), t])
    pinv = np.linalg.pinv(design)                 # (2, window)
    ahead = np.array([1.0, float(window)]) @ pinv  # prediction at t = window
    fitted = design @ pinv                         # hat matrix: fitted values inside the window
    return ahead, fitted


def _detect(series, window: int, score, direction: str, detrend: bool) -> pd.DataFrame:
    """Walk the series; `score(x, expected, residuals) -> (score, limit_high, limit_low)`."""
    if window < 4:
        raise ConfigError(f"window: need at least 4 buckets of history, got {window}")
    if direction not in ("up", "down", "both"):
        raise ConfigError(f"direction: expected 'up', 'down' or 'both', got {direction!r}")
    x, index = _values(series)
    n = len(x)
    clean = x.copy()
    s = np.full(n, np.nan)
    hi = np.full(n, np.nan)
    lo = np.full(n, np.nan)
    expected = np.full(n, np.nan)
    flag = np.zeros(n, dtype=bool)
    ahead, fitted = _line(window)
    for t in range(window, n):
        hist = clean[t - window:t]
        if detrend:
            expected[t] = ahead @ hist
            resid = hist - fitted @ hist
        else:
            expected[t] = hist.mean()
            resid = hist - expected[t]
        s[t], hi[t], lo[t] = score(x[t], expected[t], resid)
        up, down = x[t] > hi[t], x[t] < lo[t]
        flag[t] = (up and direction in ("up", "both")) or (down and direction in ("down", "both"))
        if flag[t]:  # clip at the fence: the spike stops counting, a genuine turn still does
            clean[t] = min(max(x[t], lo[t]), hi[t])
    return pd.DataFrame({"value": x, "expected": expected, "score": s, "upper": hi, "lower": lo,
                         "anomaly": flag}, index=index)


def rolling_zscore(series, window: int = 24, threshold: float = 4.0, direction: str = "up",
                   detrend: bool = True) -> pd.DataFrame:
    """Flag buckets more than `threshold` standard deviations from what the previous `window` predicts."""
    def score(v, expected, resid):
        sd = resid.std(ddof=2 if detrend else 1)
        sd = sd if sd > 0 else max(abs(expected) * 1e-9, 1e-12)
        return (v - expected) / sd, expected + threshold * sd, expected - threshold * sd
    return _detect(series, window, score, direction, detrend)


def rolling_iqr(series, window: int = 24, k: float = 3.0, direction: str = "up",
                detrend: bool = True) -> pd.DataFrame:
    """Flag buckets outside Tukey's fences (Q1 - k*IQR, Q3 + k*IQR) of the previous `window`'s residuals."""
    def score(v, expected, resid):
        q1, q3 = np.percentile(resid, [25, 75])
        iqr = q3 - q1
        iqr = iqr if iqr > 0 else max(abs(expected) * 1e-9, 1e-12)
        r = v - expected
        return (r - q3) / iqr if r >= q3 else (r - q1) / iqr, expected + q3 + k * iqr, expected + q1 - k * iqr
    return _detect(series, window, score, direction, detrend)


DETECTORS = {"zscore": rolling_zscore, "iqr": rolling_iqr}


def detect_cost_anomalies(ledger, bucket_s: float | None = None, method: str = "zscore", **kwargs) -> pd.DataFrame:
    """Anomalous cost buckets of a ledger (columns value, score, upper, lower, anomaly)."""
    if method not in DETECTORS:
        raise ConfigError(f"method: expected one of {', '.join(DETECTORS)}, got {method!r}")
    series = cost_series(ledger, bucket_s)
    window = kwargs.pop("window", None) or (24 if len(series) >= 48 else max(4, len(series) // 2))
    return DETECTORS[method](series, window=window, **kwargs)


# --------------------------------------------------------------------------- measurement


def synthetic_cost_series(n: int = 1008, period: int = 144, level: float = 10.0, amplitude: float = 4.0,
                          noise_sd: float = 0.5, rng: np.random.Generator | None = None) -> np.ndarray:
    """A week of 10-minute cost buckets: a daily sinusoid plus Gaussian noise (no anomalies)."""
    rng = rng or np.random.default_rng(0)
    t = np.arange(n)
    return level + amplitude * np.sin(2 * np.pi * t / period) + rng.normal(0.0, noise_sd, n)


def inject_spikes(y: np.ndarray, n_spikes: int = 10, magnitude_sd: tuple[float, float] = (5.0, 10.0),
                  noise_sd: float = 0.5, start: int = 48, min_gap: int = 12,
                  rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Add `n_spikes` one-bucket spikes of `magnitude_sd` noise standard deviations; returns (y, indices)."""
    rng = rng or np.random.default_rng(0)
    candidates = np.arange(start, len(y))
    chosen: list[int] = []
    for i in rng.permutation(candidates):
        if all(abs(int(i) - c) >= min_gap for c in chosen):
            chosen.append(int(i))
        if len(chosen) == n_spikes:
            break
    idx = np.sort(np.array(chosen, dtype=np.int64))
    out = np.array(y, dtype=np.float64)
    out[idx] += rng.uniform(*magnitude_sd, len(idx)) * noise_sd
    return out, idx


@dataclass(frozen=True)
class DetectorScore:
    """Precision and recall of a detector over injected spikes (exact bucket matches)."""

    detector: str
    series: int
    spikes: int
    true_positives: int
    false_positives: int

    @property
    def precision(self) -> float:
        flagged = self.true_positives + self.false_positives
        return self.true_positives / flagged if flagged else 1.0

    @property
    def recall(self) -> float:
        return self.true_positives / self.spikes if self.spikes else 1.0

    def as_dict(self) -> dict:
        return {"detector": self.detector, "series": self.series, "spikes": self.spikes,
                "true_positives": self.true_positives, "false_positives": self.false_positives,
                "precision": self.precision, "recall": self.recall}


def measure_detector(method: str = "zscore", n_series: int = 20, seed: int = 0, n: int = 1008,
                     n_spikes: int = 10, magnitude_sd: tuple[float, float] = (5.0, 10.0), **kwargs) -> DetectorScore:
    """Inject spikes into `n_series` synthetic seasonal series and count what `method` finds."""
    rng = np.random.default_rng(seed)
    detector = DETECTORS[method]
    tp = fp = spikes = 0
    for _ in range(n_series):
        clean = synthetic_cost_series(n=n, rng=rng)
        y, idx = inject_spikes(clean, n_spikes=n_spikes, magnitude_sd=magnitude_sd, rng=rng)
        flagged = np.flatnonzero(detector(y, **kwargs)["anomaly"].to_numpy())
        hits = np.isin(flagged, idx)
        tp += int(hits.sum())
        fp += int((~hits).sum())
        spikes += len(idx)
    return DetectorScore(method, n_series, spikes, tp, fp)
