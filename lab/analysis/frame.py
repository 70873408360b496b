"""Ledgers in, ledgers out: accept a Result or a DataFrame, read a saved ledger, bucket by time.

Every analysis works on the ledger DataFrame (one row per request), so it applies equally to
a simulation, a replayed trace or a recorded live session. `as_ledger` lets functions take a
`Result` too; `read_ledger` loads what `costlab run --ledger` wrote (CSV or Parquet) and
restores the column types.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lab.errors import ConfigError
from lab.ledger import CONTRACT_COLUMNS, OUTCOMES

#: text columns of the ledger (categoricals in memory)
TEXT_COLUMNS = ("tenant", "feature", "provider", "model", "outcome", "priority")
#: columns every analysis needs; the rest of the contract is used when present
REQUIRED_COLUMNS = ("t_arrival_s", "cost_usd", "baseline_cost_usd", "outcome")
#: nice time-bucket sizes in seconds, smallest first
NICE_BUCKETS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


def as_ledger(data) -> pd.DataFrame:
    """The ledger DataFrame of a `Result`, or `data` itself if it already is one (checked)."""
    ledger = getattr(data, "ledger", data)
    if not isinstance(ledger, pd.DataFrame):
        raise ConfigError(f"expected a costlab Result or a ledger DataFrame, got {type(data).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in ledger.columns]
    if missing:
        raise ConfigError(f"the ledger lacks column(s) {', '.join(missing)}; expected the columns "
                          f"`costlab run --ledger` writes ({', '.join(CONTRACT_COLUMNS)})")
    return ledger


def stage_columns(ledger: pd.DataFrame) -> list[str]:
    """The `stage_<name>` flag columns, in pipeline order."""
    return [c for c in ledger.columns if c.startswith("stage_")]


def read_ledger(path) -> pd.DataFrame:
    """Read a ledger written by `costlab run --ledger` (.csv or .parquet) with its column types."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise ConfigError(f"{p}: expected a ledger .csv or .parquet file (from `costlab run --ledger`)")
    if not p.is_file():
        raise ConfigError(f"{p}: no such ledger file")
    try:
        df = pd.read_parquet(p) if suffix == ".parquet" else pd.read_csv(p, low_memory=False)
    except Exception as exc:  # pyarrow / the CSV parser raise many types; all mean "not a ledger"
        raise ConfigError(f"{p}: cannot read the ledger ({type(exc).__name__}: {exc})") from exc
    missing = [c for c in CONTRACT_COLUMNS if c not in df.columns]
    if missing:
        raise ConfigError(f"{p}: not a costlab ledger, missing column(s) {', '.join(missing)}")
    for col in TEXT_COLUMNS:
        if col in df.columns and not isinstance(df[col].dtype, pd.CategoricalDtype):
            df[col] = df[col].astype(str).astype("category")
    bad = sorted(set(df["outcome"].astype(str)) - set(OUTCOMES))
    if bad:
        raise ConfigError(f"{p}: column outcome has unknown value(s) {', '.join(bad[:5])}; "
                          f"expected {', '.join(OUTCOMES)}")
    df["outcome"] = pd.Categorical(df["outcome"].astype(str), categories=list(OUTCOMES))
    for col in stage_columns(df):
        if df[col].dtype != bool:
            values = df[col].astype(str).str.lower()
            if not values.isin(["true", "false", "1", "0"]).all():
                raise ConfigError(f"{p}: column {col} must hold True/False")
            df[col] = values.isin(["true", "1"])
    return df


def horizon_s(ledger: pd.DataFrame) -> float:
    """Simulated (or recorded) time the ledger covers: 0 to the last arrival."""
    t = ledger["t_arrival_s"].to_numpy()
    return float(t.max()) if len(t) else 0.0


def nice_bucket_s(span_s: float, target_buckets: int = 60) -> float:
    """The smallest nice bucket size giving at most `target_buckets` buckets over `span_s`."""
    for b in NICE_BUCKETS_S:
        if span_s / b <= target_buckets:
            return float(b)
    return float(86400 * max(1, int(np.ceil(span_s / 86400 / target_buckets))))


def bucket_index(t_s: np.ndarray, bucket_s: float, n_buckets: int) -> np.ndarray:
    """Bucket of each time; times at or past the end fall in the last bucket."""
    return np.clip((np.asarray(t_s, dtype=np.float64) // bucket_s).astype(np.int64), 0, n_buckets - 1)


def n_buckets_for(ledger: pd.DataFrame, bucket_s: float) -> int:
    """Whole buckets covering the ledger (a final sliver under half a bucket joins the last one)."""
    return max(1, int(round(horizon_s(ledger) / bucket_s)))


def time_series(ledger: pd.DataFrame, column: str = "cost_usd", bucket_s: float | None = None,
                how: str = "sum") -> pd.Series:
    """`column` summed (or counted, `how="count"`) per time bucket of arrival; index = bucket start (s)."""
    ledger = as_ledger(ledger)
    bucket_s = bucket_s or nice_bucket_s(horizon_s(ledger))
    n = n_buckets_for(ledger, bucket_s)
    idx = bucket_index(ledger["t_arrival_s"].to_numpy(), bucket_s, n)
    if how == "count":
        values = np.bincount(idx, minlength=n).astype(np.float64)
    elif how == "sum":
        values = np.bincount(idx, weights=ledger[column].to_numpy(dtype=np.float64), minlength=n)
    else:
        raise ConfigError(f"how: expected 'sum' or 'count', got {how!r}")
    index = pd.Index(np.arange(n) * bucket_s, name="t_start_s")
    return pd.Series(values, index=index, name=column if how == "sum" else "requests")


def cost_series(ledger, bucket_s: float | None = None, baseline: bool = False) -> pd.Series:
    """Cost per time bucket (USD), of the run or (`baseline=True`) of its no-optimization baseline."""
    return time_series(ledger, "baseline_cost_usd" if baseline else "cost_usd", bucket_s)


def served_mask(ledger: pd.DataFrame) -> np.ndarray:
    """Rows a provider answered (and billed): not cache hits, followers, rejections or errors."""
    outcome = ledger["outcome"]
    mask = outcome.isin(["ok", "batched"]).to_numpy()
    if "provider" in ledger.columns:
        mask = mask & (ledger["provider"].astype(str) != "none").to_numpy()
    return mask

