"""Bad scenario files: one line naming file, field and what was expected; exit 2; nothing runs."""

from __future__ import annotations

import pytest

import lab
from lab.cli import main

GOOD = """
name = "ok"
duration_s = 10
[traffic]
arrivals = { process = "poisson", rate_per_s = 5.0 }
[[providers]]
name = "openai"
model = "gpt-4o-mini"
[[pipeline]]
stage = "cache"
capacity = 10
"""


def write(tmp_path, text, name="s.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


CASES = [
    # (description, replace this, with this, the error must contain all of these)
    ("wrong type", 'rate_per_s = 5.0', 'rate_per_s = "fast"', ["traffic.arrivals.rate_per_s", "expected a number"]),
    ("negative rate", 'rate_per_s = 5.0', 'rate_per_s = -3', ["traffic.arrivals.rate_per_s", "> 0"]),
    ("unknown key with did-you-mean", 'capacity = 10', 'capacty = 10',
     ["pipeline[0].capacty", "unknown field", "did you mean 'capacity'"]),
    ("unknown top-level key", 'duration_s = 10', 'duration_s = 10\ndurration = 5', ["durration", "unknown field"]),
    ("probability outside [0, 1]", 'model = "gpt-4o-mini"', 'model = "gpt-4o-mini"\nerror_rate = 1.5',
     ["providers[0].error_rate", "probability in [0, 1]"]),
    ("unknown distribution", 'rate_per_s = 5.0 }', 'rate_per_s = 5.0 }\ninput_tokens = { dist = "gaussian", mean = 3 }',
     ["traffic.input_tokens.dist", "'lognormal'"]),
    ("distribution missing a parameter", 'rate_per_s = 5.0 }',
     'rate_per_s = 5.0 }\ninput_tokens = { dist = "lognormal", median = 300 }', ["traffic.input_tokens.sigma", "required"]),
    ("unknown model", 'model = "gpt-4o-mini"', 'model = "gpt-4o-mni"',
     ["providers[0].model", "cannot price", "gpt-4o-mini"]),
    ("unknown provider", 'name = "openai"', 'name = "openia"', ["providers[0].name", "did you mean 'openai'"]),
    ("unknown stage", 'stage = "cache"', 'stage = "cashe"', ["pipeline[0].stage", "did you mean 'cache'"]),
    ("unknown arrival process", '"poisson"', '"poison"', ["traffic.arrivals.process", "did you mean 'poisson'"]),
    ("unknown policy", 'capacity = 10', 'capacity = 10\npolicy = "lru2"', ["pipeline[0].policy", "'lfu'"]),
    ("missing section", '[traffic]\narrivals = { process = "poisson", rate_per_s = 5.0 }\n', '',
     ["traffic", "required"]),
    ("missing providers", '[[providers]]\nname = "openai"\nmodel = "gpt-4o-mini"\n', '', ["providers", "required"]),
    ("missing duration", 'duration_s = 10', '', ["duration_s", "required"]),
    ("zero concurrency", 'model = "gpt-4o-mini"', 'model = "gpt-4o-mini"\nconcurrency = 0',
     ["providers[0].concurrency", ">= 1"]),
    ("uniform high < low", 'rate_per_s = 5.0 }',
     'rate_per_s = 5.0 }\noutput_tokens = { dist = "uniform", low = 10, high = 2 }', ["output_tokens.high"]),
    ("missing trace file", '{ process = "poisson", rate_per_s = 5.0 }',
     '{ process = "trace", path = "nope.jsonl", format = "mooncake" }', ["traffic.arrivals.path", "not found"]),
    ("bad ttl mode", 'capacity = 10', 'capacity = 10\nttl_s = 5\nttl_mode = "slide"', ["ttl_mode", "'sliding'"]),
    ("semantic threshold outside [0,1]", 'stage = "cache"\ncapacity = 10', 'stage = "semantic_cache"\nthreshold = 1.2',
     ["pipeline[0].threshold", "[0, 1]"]),
]


@pytest.mark.parametrize("desc,old,new,needles", CASES, ids=[c[0] for c in CASES])
def test_bad_field_gives_one_clear_line(tmp_path, capsys, desc, old, new, needles):
    assert old in GOOD, desc
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(lab.ScenarioError) as err:
        lab.load_scenario(path)
    message = str(err.value)
    assert message.startswith(str(path))
    for needle in needles:
        assert needle in message, (desc, message)
    # the command line prints the same single line, exits 2, no traceback
    code = main(["run", str(path)])
    out = capsys.readouterr()
    assert code == 2
    assert "Traceback" not in out.err and out.err.count("\n") == 1
    assert str(path) in out.err


def test_not_toml(tmp_path, capsys):
    path = write(tmp_path, "name = [unclosed\n")
    with pytest.raises(lab.ScenarioError, match="not valid TOML"):
        lab.load_scenario(path)
    assert main(["run", str(path)]) == 2
    assert "not valid TOML" in capsys.readouterr().err


def test_binary_file(tmp_path):
    path = tmp_path / "x.toml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(lab.ScenarioError, match="expected a UTF-8 TOML file"):
        lab.load_scenario(path)


def test_missing_file(capsys):
    assert main(["run", "no/such/file.toml"]) == 2
    assert "file not found" in capsys.readouterr().err


def test_good_file_loads_into_frozen_dataclasses(tmp_path):
    s = lab.load_scenario(write(tmp_path, GOOD))
    assert s.traffic.arrivals.rate_per_s == 5.0
    assert s.pipeline[0].capacity == 10
    with pytest.raises(AttributeError):
        s.name = "x"  # frozen


def test_every_shipped_scenario_loads_and_runs(root):
    for path in sorted((root / "scenarios").glob("*.toml")):
        s = lab.load_scenario(path)
        r = lab.simulate(s, seed=0, requests=2000, progress=False)
        assert r.summary()["requests"] > 0, path
