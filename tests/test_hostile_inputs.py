"""Property tests: whatever a careless or hostile user feeds costlab's readers, the answer is a value
or one `CostlabError` line that names the file (and field or line), never another exception, and
it comes quickly (each example within hypothesis' deadline).

Inputs are built from a valid example mutated at random (a field replaced by a hostile value:
huge ints, 1e30, NaN-like text, deep nesting, stray quotes, lone surrogates, control
characters), plus free text, so both the "almost right" and the "garbage" paths are walked.
The readers: the scenario loader (file and dict), the trace readers (azure, mooncake, csv),
the grader's policy parser, and the KPI formula parser and file loader.
"""

from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab import load_scenario
from lab.analysis.kpi import Formula, load_kpis
from lab.errors import CostlabError, ScenarioError
from lab.grading import load_challenge
from lab.grading.policy_schema import parse_policy_bytes
from lab.loader import scenario_from_dict
from lab.traces import read_trace
from lab.traffic import MAX_REQUESTS, check_size

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "analytics-dashboard-batching.toml"
FAST = settings(max_examples=60, deadline=3000, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                      HealthCheck.too_slow])

HOSTILE_VALUES = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1), st.sampled_from([2**63 - 1, -1, 0, 10**400]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([1e30, -1e30, 1e-300, 5e-324]),
    st.text(max_size=30), st.sampled_from(["\x1b[2J", "\ud800", "x" * 5000, ""]),
    st.booleans(), st.none(), st.lists(st.integers(), max_size=3),
    st.recursive(st.integers(), lambda inner: st.lists(inner, max_size=2), max_leaves=40),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


def one_line_error(exc: BaseException, name: str) -> None:
    assert isinstance(exc, CostlabError), f"{type(exc).__name__}: {exc}"
    text = str(exc)
    assert "\n" not in text and name in text, text
    assert len(text) < 6000, len(text)


def _paths(obj, prefix=()):
    """Every (path, value) inside a nested dict/list, for picking a field to break."""
    yield prefix, obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*prefix, i))


def mutated(base: dict, data) -> dict:
    doc = copy.deepcopy(base)
    paths = [p for p, _ in _paths(doc) if p]
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        node = doc
        try:
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = data.draw(HOSTILE_VALUES)
        except (KeyError, IndexError, TypeError):
            continue
    return doc


# --------------------------------------------------------------------------- scenarios

BASE_SCENARIO = tomllib.loads(SCENARIO.read_text())


@FAST
@given(st.data())
def test_a_mutated_scenario_loads_or_fails_naming_its_field(data):
    doc = mutated(BASE_SCENARIO, data)
    try:
        scenario = scenario_from_dict(doc, path="mutant.toml")
    except Exception as exc:  # noqa: BLE001 - the property: only a CostlabError may come out
        one_line_error(exc, "mutant.toml")
        assert isinstance(exc, ScenarioError) and (exc.field or "duration_s" in str(exc)), str(exc)
        return
    try:
        check_size(scenario)                 # a loadable scenario's size is known before anything is drawn
    except ScenarioError as exc:
        assert f"{MAX_REQUESTS:,}" in str(exc)


@FAST
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
                 st.integers(1, 20000).map(lambda n: "x = " + "[" * n + "]" * n),
                 st.integers(1, 5000).map(lambda n: "".join(f"[{'a.' * n}b]\n"))))
def test_a_garbage_scenario_file_is_one_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("s") / "garbage.toml"
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    try:
        load_scenario(path)
    except Exception as exc:  # noqa: BLE001 - the property
        one_line_error(exc, "garbage.toml")


# --------------------------------------------------------------------------- traces

AZURE_LINE = st.sampled_from(["2023-11-16 18:15:46.6805900,374,44", "2023-11-16 18:15:47,1,2"])
MOONCAKE_LINE = st.just('{"timestamp": 0, "input_length": 6758, "output_length": 500, "hash_ids": [0, 1, 2]}')
CSV_LINE = st.sampled_from(["0.5,100,20", "1.0,200,30"])
NOISE = st.one_of(st.sampled_from(['"', '"\n', ',', '\n', '""', '[' * 3000, '{"hash_ids": ' + '[' * 5000,
                                   '\x00', '9' * 400, 'nan', '-1', '1e999', '\ud800', '\r']),
                  st.text(max_size=8))
FORMATS = {"azure": ("TIMESTAMP,ContextTokens,GeneratedTokens", AZURE_LINE),
           "mooncake": (None, MOONCAKE_LINE),
           "csv": ("t_arrival_s,input_tokens,output_tokens", CSV_LINE)}


@FAST
@given(fmt=st.sampled_from(sorted(FORMATS)), data=st.data(), skip=st.booleans())
def test_a_corrupted_trace_reads_or_names_its_line(tmp_path_factory, fmt, data, skip):
    header, line = FORMATS[fmt]
    lines = data.draw(st.lists(line, min_size=1, max_size=6))
    for _ in range(data.draw(st.integers(0, 4))):
        k = data.draw(st.integers(0, len(lines) - 1))
        at = data.draw(st.integers(0, len(lines[k])))
        lines[k] = lines[k][:at] + data.draw(NOISE) + lines[k][at:]
    text = "\n".join(([header] if header else []) + lines) + "\n"
    path = tmp_path_factory.mktemp("t") / f"trace.{'jsonl' if fmt == 'mooncake' else 'csv'}"
    path.write_bytes(text.encode("utf-8", "surrogateescape") if "\ud800" not in text
                     else text.encode("utf-8", "surrogatepass"))
    try:
        trace = read_trace(path, fmt, skip_bad_rows=skip)
    except Exception as exc:  # noqa: BLE001 - the property
        one_line_error(exc, str(path))
        return
    assert len(trace) >= 1 and trace.skipped_rows >= 0


# --------------------------------------------------------------------------- policies

CHALLENGE = load_challenge("b1-first-cache")
BASE_POLICY = {"costlab_policy": 1, "challenge": "b1-first-cache",
               "pipeline": [{"stage": "cache", "capacity": 5000, "shared": True}]}


@FAST
@given(st.data())
def test_a_hostile_policy_is_a_policy_or_one_policy_error(data):
    kind = data.draw(st.sampled_from(["mutated", "bytes", "deep", "digits", "key"]))
    if kind == "mutated":
        raw = json.dumps(mutated(BASE_POLICY, data), allow_nan=True).encode("utf-8", "surrogatepass")
    elif kind == "bytes":
        raw = data.draw(st.binary(max_size=400))
    elif kind == "deep":
        n = data.draw(st.integers(1, 30000))
        raw = ("[" * n + "]" * n).encode()
    elif kind == "digits":
        raw = ('{"pipeline": [{"stage": "cache", "capacity": ' + "9" * data.draw(st.integers(1, 6000)) + "}]}").encode()
    else:
        key = data.draw(st.sampled_from(["k" * 60000, "\\ud800", "\\u001b[2J", "é" * 500]))
        raw = ('{"pipeline": [{"stage": "cache", "' + key + '": 1}]}').encode()
    try:
        parse_policy_bytes(raw, CHALLENGE)
    except Exception as exc:  # noqa: BLE001 - the property
        one_line_error(exc, "policy")
        assert len(str(exc)) <= 1000 and "\x1b" not in str(exc)


# --------------------------------------------------------------------------- KPIs

FORMULA_PIECES = st.sampled_from(["sum(", "cost_usd", ")", "/", "count()", "p95(", "latency_ms", " where ",
                                  "outcome", "==", '"ok"', "(", "1e309", "9" * 400, "-", "not ", "and", "__import__",
                                  ".", "[", "lambda", "\x1b", "\ud800", "'", '"', "\n", "percentile(", ",", "99"])


@FAST
@given(st.one_of(st.lists(FORMULA_PIECES, max_size=40).map("".join), st.text(max_size=200),
                 st.integers(1, 5000).map(lambda n: "(" * n + "1" + ")" * n)))
def test_a_hostile_kpi_formula_parses_or_is_one_kpi_error(text):
    try:
        Formula(text)
    except Exception as exc:  # noqa: BLE001 - the property
        assert isinstance(exc, CostlabError), f"{type(exc).__name__}: {exc}"
        assert "column" in str(exc)


@FAST
@given(st.one_of(st.text(max_size=200),
                 st.integers(1, 20000).map(lambda n: "kpi = " + "[" * n + "]" * n),
                 st.lists(FORMULA_PIECES, max_size=20).map(
                     lambda p: f'[[kpi]]\nname = "k"\nformula = {json.dumps("".join(p))}\nunit = "USD"\n')))
def test_a_hostile_kpi_file_loads_or_is_one_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("k") / "kpis.toml"
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    try:
        load_kpis(path)
    except Exception as exc:  # noqa: BLE001 - the property
        assert isinstance(exc, CostlabError), f"{type(exc).__name__}: {exc}"
        assert "kpis.toml" in str(exc) or "formula" in str(exc), str(exc)


@pytest.mark.parametrize("field,value,expected", [
    ("duration_s", 9223372036854775807, "generate about"),
    ("traffic.arrivals.rate_low_per_s", 9223372036854775807, "generate about"),
    ("traffic.arrivals.rate_high_per_s", 1e30, "generate about"),
    ("traffic.input_tokens.sigma", 1e30, "expected a number <= 10"),
])
def test_documented_bounds_refuse_before_drawing(field, value, expected):
    doc = copy.deepcopy(BASE_SCENARIO)
    node = doc
    *parents, last = field.split(".")
    for key in parents:
        node = node[key]
    node[last] = value
    with pytest.raises(ScenarioError, match=expected):
        check_size(scenario_from_dict(doc, path="bounds.toml"))
