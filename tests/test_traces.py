"""lab.traces reads the shipped traces faithfully and names the line of every corrupt row."""

from __future__ import annotations

import csv
import json
import math
from datetime import datetime
from decimal import Decimal

import numpy as np
import pytest

from lab import traces
from lab.errors import ConfigError, TraceError

AZURE = traces.shipped_trace_path("azure_conv")
MOONCAKE = traces.shipped_trace_path("mooncake_conversation")
AZURE_HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"


def _azure_rows():
    with open(AZURE, newline="") as f:
        return list(csv.DictReader(f))


def _mooncake_rows():
    with open(MOONCAKE) as f:
        return [json.loads(line) for line in f if line.strip()]


def _write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


def _azure_seconds(stamp: str) -> Decimal:
    """Seconds since midnight of an Azure timestamp, exactly, with the standard library."""
    clock, fraction = stamp.split(" ")[1].split(".")
    t = datetime.strptime(clock, "%H:%M:%S")
    return Decimal(t.hour * 3600 + t.minute * 60 + t.second) + Decimal("0." + fraction)


# --- the shipped traces ------------------------------------------------------------------


@pytest.fixture(scope="module")
def azure():
    return traces.read_trace(AZURE, "azure")


@pytest.fixture(scope="module")
def mooncake():
    return traces.read_trace(MOONCAKE, "mooncake")


def test_shipped_files_and_attribution_are_there():
    folder = AZURE.parent
    for name in ("AzurePublicDataset_LICENSE.txt", "Mooncake_LICENSE-APACHE.txt", "README.md"):
        assert (folder / name).is_file()
    readme = (folder / "README.md").read_text()
    for needle in ("CC-BY 4.0", "Apache-2.0", "Splitwise", "Mooncake", "b469a113", "3b5a5941"):
        assert needle in readme


def test_azure_rows_and_token_totals_match_the_file(azure):
    rows = _azure_rows()
    assert len(azure) == len(rows) == 19_366
    assert azure.format == "azure" and azure.skipped_rows == 0
    assert int(azure.input_tokens.sum(dtype=np.int64)) == sum(int(r["ContextTokens"]) for r in rows)
    assert int(azure.output_tokens.sum(dtype=np.int64)) == sum(int(r["GeneratedTokens"]) for r in rows)
    assert azure.input_tokens.dtype == np.int32 and azure.output_tokens.dtype == np.int32
    assert azure.block_ids is None and azure.block_offsets is None and azure.block_tokens == 0
    assert azure.tenant is None and azure.feature is None


def test_azure_rate_and_span_match_the_traces_readme(azure):
    span_s = azure.t_arrival_s[-1]
    assert span_s == pytest.approx(3502, abs=1)
    assert len(azure) / span_s == pytest.approx(5.53, abs=0.005)


def test_azure_times_are_exact_to_the_tenth_of_a_microsecond(azure):
    rows = _azure_rows()
    t0 = _azure_seconds(rows[0]["TIMESTAMP"])
    expected = np.array([float(_azure_seconds(r["TIMESTAMP"]) - t0) for r in rows])
    assert azure.t_arrival_s.dtype == np.float64
    assert azure.t_arrival_s[0] == 0.0
    assert azure.t_arrival_s[1] == 4.314579  # 18:15:50.9951690 - 18:15:46.6805900
    np.testing.assert_array_equal(azure.t_arrival_s, expected)
    assert np.all(np.diff(azure.t_arrival_s) >= 0)


def test_mooncake_rows_tokens_and_blocks_match_the_file(mooncake):
    rows = _mooncake_rows()
    assert len(mooncake) == len(rows) == 12_031
    assert int(mooncake.input_tokens.sum(dtype=np.int64)) == sum(r["input_length"] for r in rows)
    assert int(mooncake.output_tokens.sum(dtype=np.int64)) == sum(r["output_length"] for r in rows)
    assert mooncake.block_tokens == 512
    assert mooncake.block_ids.dtype == np.int64 and mooncake.block_offsets.dtype == np.int64
    assert len(mooncake.block_offsets) == len(mooncake) + 1
    for i, row in enumerate(rows):  # the file is in time order, so rows keep their places
        blocks = mooncake.block_ids[mooncake.block_offsets[i] : mooncake.block_offsets[i + 1]]
        assert len(blocks) == math.ceil(mooncake.input_tokens[i] / 512)
        assert blocks.tolist() == row["hash_ids"]
    assert mooncake.blocks(1).tolist() == rows[1]["hash_ids"]


def test_mooncake_times_are_seconds_from_the_first_row(mooncake):
    rows = _mooncake_rows()
    np.testing.assert_allclose(mooncake.t_arrival_s, [(r["timestamp"] - rows[0]["timestamp"]) / 1000 for r in rows])
    assert mooncake.t_arrival_s[-1] == pytest.approx(3536.999)


def test_shipped_trace_names():
    assert traces.read_shipped_trace("mooncake_conversation").format == "mooncake"
    with pytest.raises(ConfigError, match="azure_conv"):
        traces.shipped_trace_path("sharegpt")
    with pytest.raises(ConfigError, match="format"):
        traces.read_trace(AZURE, "parquet")


# --- the careful path gives the same numbers as the fast one ------------------------------


@pytest.mark.parametrize("name, fmt", [("azure_conv", "azure"), ("mooncake_conversation", "mooncake")])
def test_a_bad_row_in_a_big_file_changes_nothing_else(tmp_path, monkeypatch, name, fmt):
    monkeypatch.setattr(traces, "CHUNK_ROWS", 1000)  # several chunks, one of them bad
    clean = traces.read_shipped_trace(name)
    lines = traces.shipped_trace_path(name).read_text().splitlines(keepends=True)
    bad = "2023-11-16 18:20:00.0,12x,5\n" if fmt == "azure" else '{"timestamp": 5, "input_length": "x"}\n'
    lines.insert(5001, bad)
    path = _write(tmp_path, "t", "".join(lines))
    with pytest.raises(TraceError, match=r":5002: column"):
        traces.read_trace(path, fmt)
    dirty = traces.read_trace(path, fmt, skip_bad_rows=True)
    assert dirty.skipped_rows == 1
    for column in ("t_arrival_s", "input_tokens", "output_tokens", "block_ids", "block_offsets"):
        a, b = getattr(clean, column), getattr(dirty, column)
        assert (a is None and b is None) or (np.array_equal(a, b) and a.dtype == b.dtype), column


# --- corrupt rows are named by line -------------------------------------------------------


@pytest.mark.parametrize(
    "row, message",
    [
        ("2023-11-16 18:15:47.0,abc,5", "line:3: column ContextTokens: expected an integer >= 0, got 'abc'"),
        ("2023-11-16 18:15:47.0,-4,5", "line:3: column ContextTokens: expected an integer >= 0, got '-4'"),
        ("2023-11-16 18:15:47.0,12.5,5", "column ContextTokens: expected an integer >= 0, got '12.5'"),
        ("2023-11-16 18:15:47.0,10", "line:3: column GeneratedTokens: expected a value, got nothing"),
        ("2023-11-16 18:15:47.0,10,", "line:3: column GeneratedTokens: expected an integer >= 0, got nothing"),
        ("2023-11-16 18:15:47.0,10,5,7", "line:3: expected 3 fields as in the header, got 4"),
        ("yesterday,10,5", "line:3: column TIMESTAMP: expected a time like"),
        ("2023-11-16,10,5", "line:3: column TIMESTAMP: expected a time like"),
        ("2023-11-16 18:15:40.0,10,5", "line:3: column TIMESTAMP: expected a time at most 1 s before line 2's"),
    ],
)
def test_azure_corrupt_row(tmp_path, row, message):
    text = AZURE_HEADER + "2023-11-16 18:15:46.6805900,374,44\n" + row + "\n2023-11-16 18:15:48.0,1,2\n"
    path = _write(tmp_path, "line", text)
    with pytest.raises(TraceError) as info:
        traces.read_trace(path, "azure")
    assert message.replace("line:", f"{path}:") in str(info.value)
    skipped = traces.read_trace(path, "azure", skip_bad_rows=True)
    assert skipped.skipped_rows == 1
    assert skipped.input_tokens.tolist() == [374, 1]


@pytest.mark.parametrize(
    "row, message",
    [
        ('{"timestamp": 5, "input_length": 10, "output_length": 3', ":4: expected a JSON object, got"),
        ("[1, 2, 3]", ":4: expected a JSON object, got '[1, 2, 3]'"),
        ('{"timestamp": 5, "output_length": 3, "hash_ids": []}', ":4: column input_length: expected an integer >= 0, got nothing"),
        ('{"timestamp": 5, "input_length": -1, "output_length": 3, "hash_ids": []}', ":4: column input_length: expected an integer >= 0, got -1"),
        ('{"timestamp": 5, "input_length": 10.5, "output_length": 3, "hash_ids": [1]}', ":4: column input_length: expected an integer >= 0, got 10.5"),
        ('{"timestamp": "5", "input_length": 10, "output_length": 3, "hash_ids": [1]}', ":4: column timestamp: expected a number of milliseconds, got '5'"),
        ('{"timestamp": 5, "input_length": 10, "output_length": 3, "hash_ids": 7}', ":4: column hash_ids: expected a list of integers >= 0, got 7"),
        ('{"timestamp": 5, "input_length": 10, "output_length": 3, "hash_ids": [1, 2]}', ":4: column hash_ids: expected at most ceil(input_length / 512) = 1 block ids, got 2"),
        ('{"timestamp": 0, "input_length": 10, "output_length": 3, "hash_ids": [1]}', ":4: column timestamp: expected a time at most 1 s before line 3's, got one 3 s before it"),
    ],
)
def test_mooncake_corrupt_row(tmp_path, row, message):
    good = [
        '{"timestamp": 0, "input_length": 600, "output_length": 5, "hash_ids": [0, 1]}',
        '{"timestamp": 3000, "input_length": 512, "output_length": 5, "hash_ids": [0]}',
    ]
    after = '{"timestamp": 6000, "input_length": 1, "output_length": 2, "hash_ids": [9]}'
    path = _write(tmp_path, "t.jsonl", "\n".join([good[0], "", good[1], row, after]) + "\n")
    with pytest.raises(TraceError) as info:
        traces.read_trace(path, "mooncake")
    assert f"{path}{message}" in str(info.value)
    skipped = traces.read_trace(path, "mooncake", skip_bad_rows=True)
    assert skipped.skipped_rows == 1
    assert skipped.input_tokens.tolist() == [600, 512, 1]
    assert skipped.block_offsets.tolist() == [0, 2, 3, 4]
    assert skipped.block_ids.tolist() == [0, 1, 0, 9]


@pytest.mark.parametrize(
    "row, message",
    [
        ("1.5,ten,3,acme,chat", ":3: column input_tokens: expected an integer >= 0, got 'ten'"),
        ("nan,10,3,acme,chat", ":3: column t_arrival_s: expected a number of seconds, got 'nan'"),
        (",10,3,acme,chat", ":3: column t_arrival_s: expected a number of seconds, got nothing"),
        ("1.5,10,0x10,acme,chat", ":3: column output_tokens: expected an integer >= 0, got '0x10'"),
        ("1.5,10,99999999999,acme,chat", ":3: column output_tokens: expected an integer >= 0"),
        ("1.5,10,3,acme", ":3: column feature: expected a value, got nothing"),
    ],
)
def test_generic_csv_corrupt_row(tmp_path, row, message):
    text = "t_arrival_s,input_tokens,output_tokens,tenant,feature\n1.0,5,1,acme,chat\n" + row + "\n2.0,7,2,globex,summarize\n"
    path = _write(tmp_path, "t.csv", text)
    with pytest.raises(TraceError) as info:
        traces.read_trace(path, "csv")
    assert f"{path}{message}" in str(info.value)
    skipped = traces.read_trace(path, "csv", skip_bad_rows=True)
    assert skipped.skipped_rows == 1
    assert skipped.tenant.tolist() == ["acme", "globex"]


def test_skip_bad_rows_counts_every_bad_row_and_strict_names_the_first(tmp_path):
    rows = ["0.5,1,1", "x,1,1", "1.0,-1,1", "2.0,2,2", "2.5,3", "3.0,3,3"]
    path = _write(tmp_path, "t.csv", "t_arrival_s,input_tokens,output_tokens\n" + "\n".join(rows) + "\n")
    with pytest.raises(TraceError, match=r"t\.csv:3: column t_arrival_s"):
        traces.read_trace(path, "csv")
    trace = traces.read_trace(path, "csv", skip_bad_rows=True)
    assert trace.skipped_rows == 3
    assert trace.input_tokens.tolist() == [1, 2, 3]
    assert trace.t_arrival_s.tolist() == [0.0, 1.5, 2.5]


def test_wrong_header_names_the_missing_column_and_what_was_found(tmp_path):
    path = _write(tmp_path, "a.csv", "TIMESTAMP,ContextTokens,OutputTokens\n2023-11-16 18:15:46.0,1,2\n")
    with pytest.raises(TraceError) as info:
        traces.read_trace(path, "azure")
    text = str(info.value)
    assert f"{path}:1:" in text and "'GeneratedTokens'" in text and "TIMESTAMP,ContextTokens,OutputTokens" in text
    path = _write(tmp_path, "b.csv", "time,input_tokens,output_tokens\n1,2,3\n")
    with pytest.raises(TraceError, match="missing column 't_arrival_s'.*found time,input_tokens,output_tokens"):
        traces.read_trace(path, "csv")


def test_missing_and_empty_traces_are_errors(tmp_path):
    with pytest.raises(TraceError, match="no such trace file"):
        traces.read_trace(tmp_path / "nope.csv", "azure")
    with pytest.raises(TraceError, match="empty file"):
        traces.read_trace(_write(tmp_path, "empty.csv", ""), "azure")
    with pytest.raises(TraceError, match="no requests"):
        traces.read_trace(_write(tmp_path, "header.csv", AZURE_HEADER), "azure")
    with pytest.raises(TraceError, match="no requests"):
        traces.read_trace(_write(tmp_path, "empty.jsonl", "\n\n"), "mooncake")
    all_bad = _write(tmp_path, "bad.csv", AZURE_HEADER + "x,1,2\ny,3,4\n")
    with pytest.raises(TraceError, match=r"no requests \(2 bad rows skipped\)"):
        traces.read_trace(all_bad, "azure", skip_bad_rows=True)


def test_small_disorder_is_sorted_stably_and_large_is_an_error(tmp_path):
    text = "t_arrival_s,input_tokens,output_tokens,feature\n10.0,1,1,a\n10.6,2,2,b\n10.2,3,3,c\n10.2,4,4,d\n12,5,5,e\n"
    trace = traces.read_trace(_write(tmp_path, "t.csv", text), "csv")
    assert trace.input_tokens.tolist() == [1, 3, 4, 2, 5]
    assert trace.feature.tolist() == ["a", "c", "d", "b", "e"]
    np.testing.assert_allclose(trace.t_arrival_s, [0.0, 0.2, 0.2, 0.6, 2.0])
    with pytest.raises(TraceError, match=r":4: column t_arrival_s: expected a time at most 0.1 s before line 3's"):
        traces.read_trace(tmp_path / "t.csv", "csv", max_backwards_s=0.1)


def test_generic_csv_any_column_order_quotes_extra_columns_and_blank_lines(tmp_path):
    text = (
        'note,output_tokens,tenant,t_arrival_s,input_tokens\n'
        '"hello, world",3,acme,100.25,40\n'
        "\n"
        "x,4,globex,100.75,50\n"
    )
    trace = traces.read_trace(_write(tmp_path, "t.csv", text), "csv")
    assert trace.format == "csv" and len(trace) == 2
    assert trace.t_arrival_s.tolist() == [0.0, 0.5]
    assert trace.input_tokens.tolist() == [40, 50] and trace.output_tokens.tolist() == [3, 4]
    assert trace.tenant.tolist() == ["acme", "globex"] and trace.feature is None
    bad = text.replace("x,4,", "x,four,")
    with pytest.raises(TraceError, match=r":4: column output_tokens"):  # blank line 3 still counted
        traces.read_trace(_write(tmp_path, "bad.csv", bad), "csv")


def test_a_byte_that_is_not_utf8_is_named_by_line(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b"t_arrival_s,input_tokens,output_tokens,tenant\n1,2,3,a\n2,3,4,\xff\n")
    with pytest.raises(TraceError, match=r"t\.csv:3: expected UTF-8"):
        traces.read_trace(path, "csv")
