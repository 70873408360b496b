"""Read recorded LLM request traces into columnar numpy arrays.

Three formats, one request per line:

``azure``
    Azure LLM inference traces (Splitwise, ISCA 2024): CSV with the header
    ``TIMESTAMP,ContextTokens,GeneratedTokens``; TIMESTAMP looks like
    ``2023-11-16 18:15:46.6805900`` and is parsed exactly (to the nanosecond).
``mooncake``
    Mooncake traces (FAST 2025): JSON Lines with ``timestamp`` (milliseconds),
    ``input_length``, ``output_length`` and ``hash_ids`` (one id per 512-token prefix block;
    two requests sharing a leading id share that block of prompt).
``csv``
    costlab's generic CSV. The first line is a header naming at least
    ``t_arrival_s,input_tokens,output_tokens`` (arrival time in seconds, any origin; token
    counts as integers >= 0) and optionally ``tenant`` and ``feature`` (free text). Columns
    may come in any order; other columns are ignored. Example::

        t_arrival_s,input_tokens,output_tokens,tenant,feature
        0.000,812,203,acme,chat
        0.137,1520,96,globex,summarize

Rules shared by all formats: blank lines are ignored; a field may not span lines. Rows may be
out of order by up to ``max_backwards_s`` (default 1 s, enough for logging jitter between
servers): they are sorted stably by arrival time. A row earlier than the latest time seen
before it by more than that is corrupt, like a non-number, a negative or missing token count
or bad JSON. A corrupt row raises TraceError ``PATH:LINE: column X: expected ..., got ...``,
or with ``skip_bad_rows=True`` is dropped and counted in ``Trace.skipped_rows``. A trace with
no valid rows is an error.

Reading is fast: a clean file is parsed by pyarrow's multithreaded CSV/JSON readers
(a million rows in well under a second for CSV, a few seconds for Mooncake JSON with its
block ids). A file that pyarrow rejects, or whose values break a rule, is re-read by a
careful path (csv/json modules, then numpy) that finds each bad row and names its line.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json

from lab.errors import ConfigError, TraceError

FORMATS = ("azure", "mooncake", "csv")
MOONCAKE_BLOCK_TOKENS = 512
MAX_BACKWARDS_S = 1.0
MAX_TOKENS = np.iinfo(np.int32).max

AZURE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
CSV_COLUMNS = ("t_arrival_s", "input_tokens", "output_tokens")
CSV_OPTIONAL_COLUMNS = ("tenant", "feature")

_TRACES_DIR = Path(__file__).parent / "data" / "traces"
SHIPPED_TRACES = {
    "azure_conv": ("AzureLLMInferenceTrace_conv.csv", "azure"),
    "mooncake_conversation": ("mooncake_conversation_trace.jsonl", "mooncake"),
}


@dataclass(frozen=True, eq=False)
class Trace:
    """One recorded trace as columns: row i is the i-th request in arrival order."""

    path: str
    format: str  # "azure" | "mooncake" | "csv"
    t_arrival_s: np.ndarray  # float64 seconds from the first request, nondecreasing
    input_tokens: np.ndarray  # int32
    output_tokens: np.ndarray  # int32
    block_ids: np.ndarray | None = None  # int64 prefix block ids of all rows, concatenated
    block_offsets: np.ndarray | None = None  # int64, n + 1: row i owns block_ids[off[i]:off[i+1]]
    block_tokens: int = 0  # prompt tokens per block (512 for Mooncake), 0 without blocks
    tenant: np.ndarray | None = None  # str objects (generic csv only)
    feature: np.ndarray | None = None  # str objects (generic csv only)
    skipped_rows: int = 0  # corrupt rows dropped under skip_bad_rows=True

    def __len__(self) -> int:
        """Number of requests."""
        return len(self.input_tokens)

    def blocks(self, i: int) -> np.ndarray:
        """Prefix block ids of request ``i`` (empty if the trace has no blocks)."""
        if self.block_ids is None:
            return np.empty(0, dtype=np.int64)
        return self.block_ids[self.block_offsets[i] : self.block_offsets[i + 1]]


def shipped_trace_path(name: str) -> Path:
    """Path of a trace shipped with costlab: ``"azure_conv"`` or ``"mooncake_conversation"``."""
    if name not in SHIPPED_TRACES:
        raise ConfigError(f"trace name: expected one of {sorted(SHIPPED_TRACES)}, got {name!r}")
    return _TRACES_DIR / SHIPPED_TRACES[name][0]


def read_shipped_trace(name: str, *, skip_bad_rows: bool = False) -> Trace:
    """Read a shipped trace by name, in its own format."""
    return read_trace(shipped_trace_path(name), SHIPPED_TRACES[name][1], skip_bad_rows=skip_bad_rows)


def read_trace(
    path, format: str, *, skip_bad_rows: bool = False, max_backwards_s: float = MAX_BACKWARDS_S
) -> Trace:
    """Read the trace at ``path`` in ``format`` ("azure" | "mooncake" | "csv"); see the module doc."""
    if format not in FORMATS:
        raise ConfigError(f"trace format: expected one of {FORMATS}, got {format!r}")
    path = str(path)
    data = _read_bytes(path)
    rows = _FAST_PARSERS[format](path, data)
    if rows is None:  # pyarrow refused the file or a value breaks a rule: find the bad rows
        rows = _parse_in_chunks(path, format, _split_lines(path, data))
    rows.check_blocks()
    rows.check_order(max_backwards_s)
    return rows.finish(format, skip_bad_rows)


# ---------------------------------------------------------------------------------------
# The parsed rows, before bad ones are dropped


@dataclass
class _Rows:
    """Columns of every data row of a file, with the problems found so far per row."""

    path: str
    line_numbers: np.ndarray  # int64, file line of each row (1-based)
    time_column: str
    t_s: np.ndarray | None = None  # float64 seconds after t_origin_ns (only valid rows matter)
    t_origin_ns: int = 0  # azure: the epoch time t_s counts from, kept exact as an integer
    input_tokens: np.ndarray | None = None
    output_tokens: np.ndarray | None = None
    block_ids: np.ndarray | None = None  # int64, flat; row i's are block_ids[offsets[i]:offsets[i+1]]
    block_offsets: np.ndarray | None = None
    block_tokens: int = 0
    tenant: np.ndarray | None = None
    feature: np.ndarray | None = None
    problems: dict = field(default_factory=dict)  # row index -> message (first problem wins)

    def flag(self, row: int, column: str | None, expected: str, got, *, quote: bool = True) -> None:
        """Record that ``row`` is corrupt in ``column`` (None: the whole row); the first problem wins.

        ``got`` is the value found, quoted with repr unless ``quote`` is False (a description).
        """
        if row not in self.problems:
            shown = "nothing" if got is None else _shown(got) if quote else str(got)
            where = "" if column is None else f"column {column}: "
            self.problems[row] = f"{where}expected {expected}, got {shown}"

    def bad_mask(self) -> np.ndarray:
        """Boolean mask of the rows flagged so far."""
        mask = np.zeros(len(self.line_numbers), dtype=bool)
        mask[list(self.problems)] = True
        return mask

    def check_blocks(self) -> None:
        """Flag rows with more prefix blocks than their prompt can fill (ceil(input / block))."""
        if self.block_ids is None:
            return
        n_blocks = np.diff(self.block_offsets)
        most = -(-self.input_tokens // self.block_tokens)
        for i in np.flatnonzero(n_blocks > most):
            self.flag(
                int(i),
                "hash_ids",
                f"at most ceil(input_length / {self.block_tokens}) = {most[i]} block ids",
                n_blocks[i],
                quote=False,
            )

    def check_order(self, max_backwards_s: float) -> None:
        """Flag rows earlier than the latest valid time before them by more than the tolerance."""
        good = np.flatnonzero(~self.bad_mask())
        if len(good) == 0:
            return
        t = self.t_s[good]
        latest = np.maximum.accumulate(t)
        where_latest = np.maximum.accumulate(np.where(t >= latest, np.arange(len(t)), 0))
        # A row flagged here lies below the running maximum, so it never raised it: one pass is exact.
        for k in np.flatnonzero(t < latest - max_backwards_s):
            line = self.line_numbers[good[where_latest[k]]]
            self.flag(
                int(good[k]),
                self.time_column,
                f"a time at most {max_backwards_s:g} s before line {line}'s",
                f"one {latest[k] - t[k]:.6g} s before it",
                quote=False,
            )

    def finish(self, format: str, skip_bad_rows: bool) -> Trace:
        """Raise on the first bad row (strict), or drop bad rows; then sort and build the Trace."""
        if self.problems and not skip_bad_rows:
            row = min(self.problems, key=lambda r: self.line_numbers[r])
            raise TraceError(f"{self.path}:{self.line_numbers[row]}: {self.problems[row]}")
        keep = np.flatnonzero(~self.bad_mask())
        if len(keep) == 0:
            detail = f" ({len(self.problems)} bad rows skipped)" if self.problems else ""
            raise TraceError(f"{self.path}: the trace holds no requests{detail}")
        order = keep[np.argsort(self.t_s[keep], kind="stable")]
        t = self.t_s[order]
        block_ids = block_offsets = None
        if self.block_ids is not None:
            block_ids, block_offsets = _take_blocks(self.block_ids, self.block_offsets, order)
        return Trace(
            path=self.path,
            format=format,
            t_arrival_s=(t - t[0]).astype(np.float64),
            input_tokens=self.input_tokens[order].astype(np.int32),
            output_tokens=self.output_tokens[order].astype(np.int32),
            block_ids=block_ids,
            block_offsets=block_offsets,
            block_tokens=self.block_tokens if block_ids is not None else 0,
            tenant=None if self.tenant is None else self.tenant[order],
            feature=None if self.feature is None else self.feature[order],
            skipped_rows=len(self.problems),
        )


def _concat_rows(parts: list[_Rows]) -> _Rows:
    """One _Rows from consecutive chunks of a file (times rebased to one origin, flags renumbered)."""
    first = next((p for p in parts if len(p.problems) < len(p.line_numbers)), parts[0])
    line_numbers = np.concatenate([p.line_numbers for p in parts])
    out = _Rows(first.path, line_numbers, first.time_column, t_origin_ns=first.t_origin_ns)
    out.t_s = np.concatenate([_rebased_s(p, first.t_origin_ns) for p in parts])
    out.input_tokens = np.concatenate([p.input_tokens for p in parts])
    out.output_tokens = np.concatenate([p.output_tokens for p in parts])
    if first.block_ids is not None:
        out.block_ids, out.block_offsets = _concat_blocks(parts)
        out.block_tokens = first.block_tokens
    for name in CSV_OPTIONAL_COLUMNS:
        if getattr(first, name) is not None:
            setattr(out, name, np.concatenate([getattr(p, name) for p in parts]))
    start = 0
    for p in parts:
        out.problems.update({start + row: message for row, message in p.problems.items()})
        start += len(p.line_numbers)
    return out


def _rebased_s(rows: _Rows, origin_ns: int) -> np.ndarray:
    """``rows.t_s`` counted from ``origin_ns``, in integer nanoseconds first so nothing is lost."""
    if rows.t_origin_ns == origin_ns:
        return rows.t_s
    ns = np.rint(rows.t_s * 1e9).astype(np.int64) + (rows.t_origin_ns - origin_ns)
    return ns.astype(np.float64) / 1e9


def _concat_blocks(parts: list[_Rows]) -> tuple[np.ndarray, np.ndarray]:
    """Flat block ids and offsets of consecutive chunks."""
    ids = np.concatenate([p.block_ids for p in parts])
    ends = np.cumsum([0] + [p.block_offsets[-1] for p in parts])
    offsets = np.concatenate([[0]] + [p.block_offsets[1:] + end for p, end in zip(parts, ends, strict=False)])
    return ids, offsets.astype(np.int64)


def _take_blocks(ids: np.ndarray, offsets: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The flat block ids and offsets of rows ``order``, in that order (vectorized)."""
    lengths = np.diff(offsets)[order]
    new_offsets = np.zeros(len(order) + 1, dtype=np.int64)
    np.cumsum(lengths, out=new_offsets[1:])
    if len(order) == len(offsets) - 1 and np.array_equal(order, np.arange(len(order))):
        return ids, new_offsets
    starts = np.repeat(offsets[:-1][order] - new_offsets[:-1], lengths)
    return ids[starts + np.arange(new_offsets[-1])], new_offsets


def _flatten_blocks(lists: list) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate per-row block id lists into (ids, offsets) with offsets of length n+1."""
    lengths = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
    offsets = np.zeros(len(lists) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    ids = np.fromiter(itertools.chain.from_iterable(lists), dtype=np.int64, count=int(offsets[-1]))
    return ids, offsets


# ---------------------------------------------------------------------------------------
# Reading lines


def _read_bytes(path: str) -> bytes:
    """The file's bytes; a missing or unreadable file is a TraceError naming it."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise TraceError(f"{path}: no such trace file") from None
    except IsADirectoryError:
        raise TraceError(f"{path}: is a directory, expected a trace file") from None
    except OSError as exc:
        raise TraceError(f"{path}: cannot read the trace file ({exc.strerror or exc})") from None


def _shown(value, limit: int = 60) -> str:
    """A value found in a row, for a message: repr cut to `limit` characters (deep nesting summarised)."""
    try:
        text = repr(value)
    except RecursionError:
        text = f"a {type(value).__name__} nested too deeply"
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _split_lines(path: str, data: bytes) -> list[tuple[int, str]]:
    """Non-blank lines of the file with their 1-based line numbers; decoding errors name the line."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise TraceError(f"{path}:{line}: expected UTF-8 text, got byte {data[exc.start]:#04x}") from None
    return [(i, line.rstrip("\r")) for i, line in enumerate(text.split("\n"), start=1) if line.strip()]


# ---------------------------------------------------------------------------------------
# CSV formats


def _split_csv(path: str, lines: list[tuple[int, str]], required: tuple[str, ...]):
    """The header (checked for ``required`` columns), the data rows and their line numbers."""
    if not lines:
        raise TraceError(f"{path}: empty file, expected a header line {','.join(required)}")
    header_line, header_text = lines[0]
    header = [name.strip() for name in next(csv.reader([header_text]))]
    for name in required:
        if name not in header:
            raise TraceError(
                f"{path}:{header_line}: header: missing column {name!r}; "
                f"expected {','.join(required)}, found {','.join(header)}"
            )
    reader = csv.reader(text for _, text in lines[1:])
    rows: list[list[str]] = []
    try:
        for row in reader:
            if reader.line_num > len(rows) + 1:      # this row took more than its own line
                raise TraceError(f"{path}:{lines[len(rows) + 1][0]}: a quoted field runs past the end of the line "
                                 "(a stray \" or a field spanning lines): one row per line is expected")
            rows.append(row)
    except csv.Error as exc:
        raise TraceError(f"{path}:{lines[min(reader.line_num, len(lines) - 1)][0]}: bad CSV ({exc})") from None
    line_numbers = np.fromiter((n for n, _ in lines[1:]), dtype=np.int64, count=len(rows))
    return header, rows, line_numbers


def _csv_columns(header: list[str], rows: list[list[str]], found: _Rows, wanted) -> dict[str, np.ndarray]:
    """String columns by name; rows with too few or too many fields are flagged and blanked."""
    width = len(header)
    for i in np.flatnonzero(np.fromiter(map(len, rows), dtype=np.int64, count=len(rows)) != width):
        n_fields = len(rows[i])
        if n_fields < width:
            found.flag(int(i), header[n_fields], "a value", None)
        else:
            found.flag(int(i), None, f"{width} fields as in the header", f"{n_fields}", quote=False)
        rows[i] = [""] * width
    columns = {}
    for name in wanted:
        if name in header:
            j = header.index(name)
            columns[name] = np.array([row[j] for row in rows], dtype=str)
    return columns


def _int_column(col: np.ndarray, name: str, found: _Rows) -> np.ndarray:
    """Token counts: integers in [0, 2**31 - 1] (spaces around allowed); others are flagged (0)."""
    col = np.char.strip(col)
    ok = np.char.isdigit(col) & (np.char.str_len(col) <= 10)
    values = np.zeros(len(col), dtype=np.int64)
    values[ok] = col[ok].astype(np.int64)
    ok &= values <= MAX_TOKENS
    for i in np.flatnonzero(~ok):
        found.flag(int(i), name, "an integer >= 0", str(col[i]) or None)
    return values


def _float_column(col: np.ndarray, name: str, found: _Rows) -> np.ndarray:
    """Finite floats; other values are flagged (value 0.0)."""
    try:
        values = col.astype(np.float64)
    except ValueError:
        values = np.array([_float_or_nan(s) for s in col], dtype=np.float64)
    for i in np.flatnonzero(~np.isfinite(values)):
        found.flag(int(i), name, "a number of seconds", str(col[i]) or None)
    return np.where(np.isfinite(values), values, 0.0)


def _float_or_nan(text: str) -> float:
    """float(text), or NaN when text is not a number."""
    try:
        return float(text)
    except ValueError:
        return math.nan


def _timestamp_column(col: np.ndarray, name: str, found: _Rows) -> np.ndarray:
    """Azure timestamps to float64 seconds from the first valid row (set as ``found.t_origin_ns``)."""
    try:
        stamps = col.astype("datetime64[ns]")
    except ValueError:
        stamps = np.array([_datetime_or_nat(s) for s in col], dtype="datetime64[ns]")
    ok = ~np.isnat(stamps) & (np.char.str_len(col) >= len("2023-11-16 18:15:46"))
    for i in np.flatnonzero(~ok):
        found.flag(int(i), name, "a time like 2023-11-16 18:15:46.6805900", str(col[i]) or None)
    ns = stamps.astype(np.int64)
    origin = int(ns[np.argmax(ok)]) if ok.any() else 0
    ns = np.where(ok, ns, origin)
    found.t_origin_ns = origin
    return (ns - origin).astype(np.float64) / 1e9  # int64 difference first: no precision lost


def _datetime_or_nat(text: str) -> np.datetime64:
    """np.datetime64(text) in ns, or NaT when text is not a time."""
    try:
        return np.datetime64(text, "ns")
    except ValueError:
        return np.datetime64("NaT", "ns")


def _parse_azure(path: str, lines: list[tuple[int, str]]) -> _Rows:
    """Rows of an Azure LLM inference trace CSV."""
    header, rows, line_numbers = _split_csv(path, lines, AZURE_COLUMNS)
    found = _Rows(path, line_numbers, "TIMESTAMP")
    cols = _csv_columns(header, rows, found, AZURE_COLUMNS)
    found.t_s = _timestamp_column(cols["TIMESTAMP"], "TIMESTAMP", found)
    found.input_tokens = _int_column(cols["ContextTokens"], "ContextTokens", found)
    found.output_tokens = _int_column(cols["GeneratedTokens"], "GeneratedTokens", found)
    return found


def _parse_csv(path: str, lines: list[tuple[int, str]]) -> _Rows:
    """Rows of costlab's generic CSV (see the module docstring)."""
    header, rows, line_numbers = _split_csv(path, lines, CSV_COLUMNS)
    found = _Rows(path, line_numbers, "t_arrival_s")
    cols = _csv_columns(header, rows, found, CSV_COLUMNS + CSV_OPTIONAL_COLUMNS)
    found.t_s = _float_column(cols["t_arrival_s"], "t_arrival_s", found)
    found.input_tokens = _int_column(cols["input_tokens"], "input_tokens", found)
    found.output_tokens = _int_column(cols["output_tokens"], "output_tokens", found)
    found.tenant = _label_column(cols.get("tenant"))
    found.feature = _label_column(cols.get("feature"))
    return found


def _label_column(col: np.ndarray | None) -> np.ndarray | None:
    """A text column as an object array whose equal values share one str (compact for 1M rows)."""
    if col is None:
        return None
    labels, codes = np.unique(col, return_inverse=True)
    return np.array([str(s) for s in labels], dtype=object)[codes]


# ---------------------------------------------------------------------------------------
# Mooncake JSON Lines


def _parse_mooncake(path: str, lines: list[tuple[int, str]]) -> _Rows:
    """Rows of a Mooncake JSONL trace, examined one by one."""
    line_numbers = np.fromiter((n for n, _ in lines), dtype=np.int64, count=len(lines))
    found = _Rows(path, line_numbers, "timestamp")
    records = [_json_record(i, text, found) for i, (_, text) in enumerate(lines)]
    ts_ms = _json_numbers([r.get("timestamp") for r in records], "timestamp", found, integer=False)
    found.t_s = ts_ms / 1000.0
    found.input_tokens = _json_numbers([r.get("input_length") for r in records], "input_length", found)
    found.output_tokens = _json_numbers([r.get("output_length") for r in records], "output_length", found)
    blocks = [_json_blocks(i, r.get("hash_ids"), found) for i, r in enumerate(records)]
    found.block_ids, found.block_offsets = _flatten_blocks(blocks)
    found.block_tokens = MOONCAKE_BLOCK_TOKENS
    return found


def _json_record(row: int, text: str, found: _Rows) -> dict:
    """The JSON object on one line, or {} (flagged) when the line is not one."""
    try:
        record = json.loads(text)
    except (ValueError, RecursionError):     # RecursionError: arrays nested thousands deep
        record = None
    if not isinstance(record, dict):
        found.flag(row, None, "a JSON object", text[:60])
        return {}
    return record


def _json_numbers(values: list, name: str, found: _Rows, integer: bool = True) -> np.ndarray:
    """A numeric JSON field: token counts are integers in [0, 2**31 - 1], times finite numbers."""
    out = np.zeros(len(values), dtype=np.int64 if integer else np.float64)
    expected = "an integer >= 0" if integer else "a number of milliseconds"
    for i, v in enumerate(values):
        if _json_number_ok(v, integer):
            out[i] = v
        else:
            found.flag(i, name, expected, v)
    return out


def _json_number_ok(value, integer: bool) -> bool:
    """Whether a decoded JSON value is a valid token count (integer) or time (any finite number)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if integer:
        return isinstance(value, int) and 0 <= value <= MAX_TOKENS
    return math.isfinite(value)


def _json_blocks(row: int, value, found: _Rows) -> list:
    """A ``hash_ids`` list of integers >= 0, or [] (flagged) when it is not one."""
    if type(value) is list and all(type(x) is int and 0 <= x < 2**63 for x in value):
        return value
    found.flag(row, "hash_ids", "a list of integers >= 0", value)
    return []


# ---------------------------------------------------------------------------------------
# Fast path: pyarrow reads a clean file; None sends the file to the careful path above

_BLANK_LINE = re.compile(rb"\n[ \t\r]*\n")  # starts with a literal: scans at memchr speed


def _one_row_per_line(data: bytes) -> int | None:
    """Number of lines when the file has no blank line (so row i sits on a known line), else None."""
    body = data.rstrip()
    if not body or not data.split(b"\n", 1)[0].strip() or _BLANK_LINE.search(body):
        return None
    return body.count(b"\n") + 1


def _valid_counts(column: pa.ChunkedArray) -> np.ndarray | None:
    """Token counts as int64 when none is missing, negative or above 2**31 - 1, else None.

    CSV columns arrive as text and must be plain decimal digits (pyarrow alone would also
    take hexadecimal), the same rule as the careful path.
    """
    if column.null_count or len(column) == 0:
        return None
    if pa.types.is_string(column.type):
        if not pc.all(pc.match_substring_regex(column, r"^\s*[0-9]{1,10}\s*$")).as_py():
            return None
        column = pc.utf8_trim_whitespace(column).cast(pa.int64())
    values = column.to_numpy()
    if values.min() < 0 or values.max() > MAX_TOKENS:
        return None
    return values


def _csv_header(data: bytes) -> list[str] | None:
    """Column names of a CSV file's first line, or None when it cannot be decoded."""
    first = data.split(b"\n", 1)[0]
    try:
        return next(csv.reader([first.decode("utf-8-sig").rstrip("\r")]))
    except (UnicodeDecodeError, csv.Error, StopIteration):
        return None


def _arrow_csv(data: bytes, types: dict[str, pa.DataType], n_lines: int) -> pa.Table | None:
    """The columns ``types`` of a CSV file, or None when pyarrow refuses it or rows went astray."""
    header = _csv_header(data)
    if header is None or any(name not in header for name in types) or len(set(header)) != len(header):
        return None
    options = pa_csv.ConvertOptions(
        column_types=types, include_columns=list(types), strings_can_be_null=False
    )
    try:
        table = pa_csv.read_csv(io.BytesIO(data), convert_options=options)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None
    return table if table.num_rows == n_lines - 1 else None


def _fast_csv_rows(path: str, n_rows: int, time_column: str) -> _Rows:
    """An empty _Rows for a clean CSV whose row i sits on line i + 2."""
    return _Rows(path, np.arange(2, n_rows + 2, dtype=np.int64), time_column)


def _fast_azure(path: str, data: bytes) -> _Rows | None:
    """Rows of a clean Azure trace read by pyarrow, or None."""
    n_lines = _one_row_per_line(data)
    if n_lines is None:
        return None
    types = {"TIMESTAMP": pa.string(), "ContextTokens": pa.string(), "GeneratedTokens": pa.string()}
    table = _arrow_csv(data, types, n_lines)
    if table is None or table.num_rows == 0:
        return None
    stamps = table.column("TIMESTAMP")
    if pc.min(pc.utf8_length(stamps)).as_py() < len("2023-11-16 18:15:46"):
        return None
    try:
        ns = stamps.cast(pa.timestamp("ns")).to_numpy().astype(np.int64)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    found = _fast_csv_rows(path, table.num_rows, "TIMESTAMP")
    found.t_origin_ns = int(ns[0])
    found.t_s = (ns - ns[0]).astype(np.float64) / 1e9  # int64 difference first: no precision lost
    found.input_tokens = _valid_counts(table.column("ContextTokens"))
    found.output_tokens = _valid_counts(table.column("GeneratedTokens"))
    return None if found.input_tokens is None or found.output_tokens is None else found


def _fast_csv(path: str, data: bytes) -> _Rows | None:
    """Rows of a clean generic CSV trace read by pyarrow, or None."""
    n_lines = _one_row_per_line(data)
    header = _csv_header(data)
    if n_lines is None or header is None:
        return None
    types = {"t_arrival_s": pa.float64(), "input_tokens": pa.string(), "output_tokens": pa.string()}
    types |= {name: pa.string() for name in CSV_OPTIONAL_COLUMNS if name in header}
    table = _arrow_csv(data, types, n_lines)
    if table is None or table.num_rows == 0 or table.column("t_arrival_s").null_count:
        return None
    found = _fast_csv_rows(path, table.num_rows, "t_arrival_s")
    found.t_s = table.column("t_arrival_s").to_numpy()
    if not np.isfinite(found.t_s).all():
        return None
    found.input_tokens = _valid_counts(table.column("input_tokens"))
    found.output_tokens = _valid_counts(table.column("output_tokens"))
    for name in CSV_OPTIONAL_COLUMNS:
        if name in types:
            labels = table.column(name).to_numpy(zero_copy_only=False).astype(str)
            setattr(found, name, _label_column(labels))
    return None if found.input_tokens is None or found.output_tokens is None else found


_MOONCAKE_SCHEMA = pa.schema(
    [
        ("timestamp", pa.float64()),
        ("input_length", pa.int64()),
        ("output_length", pa.int64()),
        ("hash_ids", pa.list_(pa.int64())),
    ]
)


def _fast_mooncake(path: str, data: bytes) -> _Rows | None:
    """Rows of a clean Mooncake trace read by pyarrow, or None."""
    n_lines = _one_row_per_line(data)
    if n_lines is None or data.startswith(b"\xef\xbb\xbf"):
        return None
    options = pa_json.ParseOptions(explicit_schema=_MOONCAKE_SCHEMA, unexpected_field_behavior="ignore")
    try:
        table = pa_json.read_json(io.BytesIO(data), parse_options=options)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None
    if table.num_rows != n_lines or any(table.column(name).null_count for name in table.column_names):
        return None
    found = _Rows(path, np.arange(1, n_lines + 1, dtype=np.int64), "timestamp")
    found.t_s = table.column("timestamp").to_numpy() / 1000.0
    found.input_tokens = _valid_counts(table.column("input_length"))
    found.output_tokens = _valid_counts(table.column("output_length"))
    hash_ids = table.column("hash_ids").combine_chunks()
    ids = hash_ids.flatten()  # respects the list array's own offset, unlike .values
    if ids.null_count:
        return None
    offsets = hash_ids.offsets.to_numpy().astype(np.int64)
    found.block_ids, found.block_offsets = ids.to_numpy(), offsets - offsets[0]
    found.block_tokens = MOONCAKE_BLOCK_TOKENS
    if not np.isfinite(found.t_s).all() or (found.block_ids.size and found.block_ids.min() < 0):
        return None
    return None if found.input_tokens is None or found.output_tokens is None else found


_FAST_PARSERS = {"azure": _fast_azure, "mooncake": _fast_mooncake, "csv": _fast_csv}
_CAREFUL_PARSERS = {"azure": _parse_azure, "mooncake": _parse_mooncake, "csv": _parse_csv}

CHUNK_ROWS = 10_000
_HAS_HEADER = {"azure": True, "mooncake": False, "csv": True}


def _parse_in_chunks(path: str, format: str, lines: list[tuple[int, str]]) -> _Rows:
    """Parse a file that failed the fast path chunk by chunk, each fast if it can be.

    Bad rows are usually few, so most chunks still go through pyarrow; only the chunks
    holding them are examined row by row. Line numbers come from ``lines``.
    """
    header = lines[:1] if _HAS_HEADER[format] else []
    body = lines[len(header) :]
    if not body:
        return _CAREFUL_PARSERS[format](path, lines)
    parts = []
    for start in range(0, len(body), CHUNK_ROWS):
        chunk = header + body[start : start + CHUNK_ROWS]
        blob = "\n".join(text for _, text in chunk).encode("utf-8")
        rows = _FAST_PARSERS[format](path, blob) or _CAREFUL_PARSERS[format](path, chunk)
        rows.line_numbers = np.fromiter((n for n, _ in chunk[len(header) :]), dtype=np.int64)
        parts.append(rows)
    return _concat_rows(parts)
