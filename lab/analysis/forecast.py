"""Forecasting cost per time bucket: seasonal naive and additive Holt-Winters, with intervals.

Holt-Winters is the additive error-correction form of ETS(A,A,A) (Hyndman & Athanasopoulos,
*Forecasting: Principles and Practice*, §7–8)::

    e_t = y_t - (l + b + s_{t-m})
    l  <- l + b + alpha * e_t
    b  <- b + beta * e_t
    s_t = s_{t-m} + gamma * e_t

Smoothing parameters are chosen by grid search on the one-step-ahead squared error (the
whole grid runs at once, vectorized), and the h-step interval uses the ETS(A,A,A)
variance ``sigma^2 * (1 + sum_{j<h} (alpha + beta*j + gamma*[j % m == 0])^2)``. Without a
season (`period` None) it is Holt's linear trend. Seasonal naive repeats the last season,
with the spread of the seasonal differences widening as sqrt(k) over k seasons ahead.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import pandas as pd

from lab import fmt
from lab.analysis.frame import cost_series
from lab.errors import ConfigError

ALPHAS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9)
BETAS = (0.0, 0.005, 0.02, 0.05, 0.1)
GAMMAS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5)


@dataclass
class Forecast:
    """Point forecasts and a prediction interval for the buckets after a series."""

    method: str
    t_start_s: np.ndarray       # bucket starts of the forecast horizon
    mean: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    level: float
    params: dict
    residual_sd: float
    fitted: np.ndarray | None = None   # one-step-ahead predictions over the history

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"t_start_s": self.t_start_s, "mean": self.mean, "lower": self.lower,
                             "upper": self.upper})

    def total(self) -> tuple[float, float, float]:
        """Sum over the horizon (mean, and a conservative interval: the sum of the bounds)."""
        return float(self.mean.sum()), float(self.lower.sum()), float(self.upper.sum())

    def _repr_html_(self) -> str:
        mean, lo, hi = self.total()
        p = ", ".join(f"{k}={v:g}" for k, v in self.params.items())
        return (f"<p>{fmt.html_text(self.method)} ({fmt.html_text(p)}): {len(self.mean)} buckets ahead, "
                f"total {fmt.html_text(fmt.usd(mean))} [{fmt.html_text(fmt.usd(lo))}, {fmt.html_text(fmt.usd(hi))}] "
                f"at {int(self.level * 100)} %</p>"
                + fmt.html_markup(self.to_frame().to_html(index=False, max_rows=20)))


def _z(level: float) -> float:
    if not 0 < level < 1:
        raise ConfigError(f"level: expected a probability between 0 and 1, got {level}")
    return NormalDist().inv_cdf(0.5 + level / 2.0)


def _as_array(y) -> tuple[np.ndarray, np.ndarray, float]:
    """Values, bucket starts and bucket size of a Series (index = bucket starts) or an array."""
    if isinstance(y, pd.Series):
        values = y.to_numpy(dtype=np.float64)
        index = np.asarray(y.index, dtype=np.float64)
    else:
        values = np.asarray(y, dtype=np.float64)
        index = np.arange(len(values), dtype=np.float64)
    step = float(index[1] - index[0]) if len(index) > 1 else 1.0
    if not np.all(np.isfinite(values)):
        raise ConfigError("forecast: the series has missing or infinite values")
    return values, index, step


def _future(index: np.ndarray, step: float, horizon: int) -> np.ndarray:
    last = index[-1] if len(index) else -step
    return last + step * np.arange(1, horizon + 1)


def seasonal_naive(y, period: int, horizon: int, level: float = 0.95) -> Forecast:
    """Each future bucket equals the same bucket one season earlier."""
    values, index, step = _as_array(y)
    if period < 1 or len(values) < period + 1:
        raise ConfigError(f"seasonal naive needs more than one season of data ({period} buckets), got {len(values)}")
    h = np.arange(1, horizon + 1)
    last_season = values[-period:]
    mean = last_season[(h - 1) % period]
    diffs = values[period:] - values[:-period]
    sd = float(np.sqrt(np.mean(diffs ** 2)))
    k = np.ceil(h / period)
    half = _z(level) * sd * np.sqrt(k)
    fitted = np.concatenate([np.full(period, np.nan), values[:-period]])
    return Forecast("seasonal naive", _future(index, step, horizon), mean, mean - half, mean + half, level,
                    {"period": period}, sd, fitted)


def _hw_filter(y: np.ndarray, period: int, alpha, beta, gamma):
    """Run Holt-Winters over y for arrays of parameters at once; returns SSE and final states."""
    m = max(period, 1)
    seasonal = period > 1
    n = len(y)
    k = len(alpha)
    if seasonal:
        first = y[:m].mean()
        trend0 = (y[m:2 * m].mean() - first) / m if n >= 2 * m else 0.0
        season = np.tile(y[:m] - first, (k, 1))
        level = np.full(k, first - trend0 * (m - 1) / 2.0)
    else:  # a least-squares line through the first points: one noisy step must not set the trend
        head = y[:min(n, 10)]
        slope, intercept = np.polyfit(np.arange(len(head)), head, 1) if len(head) > 1 else (0.0, y[0])
        trend0 = float(slope)
        season = np.zeros((k, 1))
        level = np.full(k, float(intercept) - trend0)
    trend = np.full(k, trend0)
    sse = np.zeros(k)
    fitted = np.empty((k, n))
    for t in range(n):
        s = season[:, t % m] if seasonal else 0.0
        pred = level + trend + s
        fitted[:, t] = pred
        e = y[t] - pred
        if t >= m or not seasonal:        # the first season only initialises
            sse += e * e
        level = level + trend + alpha * e
        trend = trend + beta * e
        if seasonal:
            season[:, t % m] = s + gamma * e
    return sse, level, trend, season, fitted


def holt_winters(y, period: int | None = None, horizon: int = 12, level: float = 0.95,
                 alpha: float | None = None, beta: float | None = None, gamma: float | None = None) -> Forecast:
    """Additive Holt-Winters (Holt's linear trend when `period` is None or 1), fitted by grid search."""
    values, index, step = _as_array(y)
    m = int(period or 1)
    seasonal = m > 1
    need = 2 * m if seasonal else 3
    if len(values) < need:
        raise ConfigError(f"Holt-Winters needs at least {need} buckets"
                          + (f" (two seasons of {m})" if seasonal else "") + f", got {len(values)}")
    grid = list(itertools.product(
        ALPHAS if alpha is None else (alpha,), BETAS if beta is None else (beta,),
        (GAMMAS if gamma is None else (gamma,)) if seasonal else (0.0,)))
    grid = [(a, b, g) for a, b, g in grid if b <= a and g <= 1 - a]   # keep the model stable
    if not grid:
        raise ConfigError("holt_winters: need beta <= alpha and gamma <= 1 - alpha")
    a, b, g = (np.array(col, dtype=np.float64) for col in zip(*grid))
    sse, lvl, trd, season, fitted = _hw_filter(values, m, a, b, g)
    best = int(np.argmin(sse))
    ab, bb, gb = float(a[best]), float(b[best]), float(g[best])
    n_err = len(values) - (m if seasonal else 0)
    sigma = math.sqrt(sse[best] / max(n_err - 3, 1))
    h = np.arange(1, horizon + 1)
    s_future = season[best][(len(values) + h - 1) % m] if seasonal else 0.0
    mean = lvl[best] + h * trd[best] + s_future
    c = ab + bb * np.arange(1, horizon) + (gb * ((np.arange(1, horizon) % m) == 0) if seasonal else 0.0)
    var = sigma ** 2 * (1.0 + np.concatenate([[0.0], np.cumsum(c ** 2)]))
    half = _z(level) * np.sqrt(var)
    params = {"alpha": ab, "beta": bb, **({"gamma": gb, "period": m} if seasonal else {})}
    return Forecast("Holt-Winters additive" if seasonal else "Holt linear trend", _future(index, step, horizon),
                    mean, mean - half, mean + half, level, params, sigma, fitted[best])


def forecast_cost(ledger, bucket_s: float | None = None, horizon: int | None = None,
                  period_s: float | None = None, level: float = 0.95, method: str = "auto") -> Forecast:
    """Forecast the cost per bucket after a ledger's last bucket.

    `method` "holt-winters", "seasonal-naive" or "auto" (Holt-Winters with a season of
    `period_s` when the ledger covers two of them, else Holt's linear trend). `horizon`
    defaults to a quarter of the history. Negative forecasts are clipped at zero.
    """
    series = cost_series(ledger, bucket_s)
    step = float(series.index[1] - series.index[0]) if len(series) > 1 else float(bucket_s or 1.0)
    period = int(round(period_s / step)) if period_s else None
    if period is not None and len(series) < 2 * period:
        period = None
    horizon = horizon or max(1, len(series) // 4)
    if method == "seasonal-naive":
        if period is None:
            raise ConfigError("seasonal naive needs period_s and at least two periods of data")
        fc = seasonal_naive(series, period, horizon, level)
    elif method in ("auto", "holt-winters"):
        fc = holt_winters(series, period, horizon, level)
    else:
        raise ConfigError(f"method: expected 'auto', 'holt-winters' or 'seasonal-naive', got {method!r}")
    fc.mean = np.maximum(fc.mean, 0.0)
    fc.lower = np.maximum(fc.lower, 0.0)
    fc.upper = np.maximum(fc.upper, 0.0)
    return fc
