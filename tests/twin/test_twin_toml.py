"""The scenario TOML writer (lab/twin/scenario_file.py, on tomli-w): what it writes, tomllib reads back unchanged.

The expected values are the inputs themselves (a round trip) and the TOML 1.0 spec's rules
for strings, keys and tables; tomllib is the reference reader.
"""

from __future__ import annotations

import math
import tomllib

import pytest

import lab
from lab.twin import scenario_toml as dumps


def roundtrip(data, header=""):
    text = dumps(data, header)
    assert tomllib.loads(text) == data, text
    return text


def test_scalars_strings_and_keys_round_trip():
    roundtrip({
        "int": 3, "neg": -7, "big": 2**62, "zero_float": 0.0, "float": 0.1, "tiny": 1.5e-7, "huge": 1e16,
        "whole_float": 5.0, "t": True, "f": False,
        "plain": "abc", "quotes": 'say "hi" \\ there', "newline": "a\nb\tc", "unicode": "café ✓ 日本",
        "control": "bell\x07 del\x7f", "empty": "",
        "dotted.key": 1, "space key": 2, "": 3, "ключ": 4,
    })


def test_floats_stay_floats_and_ints_stay_ints():
    out = tomllib.loads(dumps({"a": 5.0, "b": 5, "c": 1e300}))
    assert isinstance(out["a"], float) and isinstance(out["b"], int) and out["c"] == 1e300


def test_tables_inline_tables_arrays_of_tables_and_long_arrays():
    data = {
        "name": "x",
        "traffic": {
            "arrivals": {"process": "poisson", "rate_per_s": 2.5},
            "input_tokens": {"dist": "empirical", "values": list(range(1, 300)), "weights": [1.0] * 299},
            "tenants": [{"name": "a", "weight": 1}, {"name": "b", "weight": 2}],
            "nested": {"deeper": {"deepest": {"k": [1, 2, {"x": 1}] * 40}}},
        },
        "providers": [{"name": "openai", "model": "gpt-4o-mini", "latency_ms": {"dist": "constant", "value": 1}},
                      {"name": "google", "model": "gemini-2.5-flash", "outages": [{"start_s": 1, "end_s": 2}] * 30}],
        "pipeline": [{"stage": "cache", "capacity": 10}, {"stage": "dedup"}],
        "empty_list": [], "empty_table": {},
        "sla": {"p95_ms": 3000.0},
    }
    text = roundtrip(data)
    assert "[[pipeline]]" in text and "[[providers]]" in text
    assert max(len(line) for line in text.splitlines()) < 120       # long arrays wrap


def test_header_becomes_wrapped_comments():
    text = roundtrip({"a": 1}, header="first line\n\n- " + "word " * 40)
    lines = text.splitlines()
    assert lines[0] == "# first line" and lines[1] == "#"
    assert all(line.startswith("#") for line in lines[:5]) and all(len(line) <= 100 for line in lines)


@pytest.mark.parametrize("bad", [{"a": None}, {"a": math.nan}, {"a": math.inf}, {"a": object()}, {1: 2}])
def test_unwritable_values_are_errors_not_silent_losses(bad):
    with pytest.raises(ValueError):
        dumps(bad)


def test_every_shipped_scenario_survives_a_write_and_read(root):
    # not a run: the parsed file, written back and read again, validates into the same Scenario
    for path in sorted((root / "scenarios").glob("*.toml")):
        data = tomllib.loads(path.read_text())
        again = tomllib.loads(dumps(data))
        assert again == data, path
        a = lab.scenario_from_dict(data, path=str(path))
        b = lab.scenario_from_dict(again, path=str(path))
        assert a == b, path
