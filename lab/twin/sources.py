"""Where a twin's traffic comes from: a trace file, a Trace, a ledger or a Result, read into one shape.

A source is a trace file (`format` "azure" | "mooncake" | "csv" | "ledger"), a
`lab.traces.Trace`, a ledger DataFrame (`Result.ledger`, or one read back from
`costlab run --ledger`) or a `Result`. Each becomes a `TrafficSource`: arrival times from 0,
token counts, and what identifies prompts and prefix blocks when the source knows it.
Live cassettes (`lab.live`) are not a source yet: they raise a ConfigError saying so.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.csv as pa_csv

from lab.errors import ConfigError, TraceError
from lab.result import Result
from lab.traces import Trace, read_trace

SOURCE_FORMATS = ("azure", "mooncake", "csv", "ledger", "cassette")


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
    if isinstance(source, TrafficSource):
        return source
    if isinstance(source, Trace):
        return _from_trace(source)
    if isinstance(source, pd.DataFrame):
        return _from_ledger(source, "ledger")
    if isinstance(source, Result):
        return _from_ledger(source.ledger, f"ledger of {source.scenario.name}")
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
