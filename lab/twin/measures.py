"""Numbers read off a request stream, the same way for a source and for its twin.

The index of dispersion of arrival counts, the step of a trace's clock, how much of each
prompt an ideal prefix cache could reuse, and how often a prompt repeats: fitting chooses a
twin by them and validation compares the twin with its source on them.
"""

from __future__ import annotations

import math

import numpy as np


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


def reuse_gaps_s(t: np.ndarray, block_ids: np.ndarray, offsets: np.ndarray, reused: np.ndarray) -> np.ndarray:
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


def duplicate_rate(keys: np.ndarray) -> float:
    """Share of requests whose exact prompt was asked before."""
    return 1.0 - len(np.unique(keys)) / len(keys) if len(keys) else 0.0
