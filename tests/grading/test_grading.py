"""Challenges, policy validation and the score formula (no notebooks run here: see test_grading_sandbox.py)."""

from __future__ import annotations

import json
import os
import stat
import sys

import nbformat
import numpy as np
import pytest

import lab
import lab.policy
from lab.grading import PolicyError, PrivateDir, evaluate, list_challenges, load_challenge, parse_policy
from lab.grading.challenge import LEVELS, Badge
from lab.grading.grader import KERNEL_NAME, write_kernelspec
from lab.grading.policy_schema import build_scenario
from lab.stages import stage_names, world_fields


@pytest.fixture(scope="module")
def challenges():
    return list_challenges()


@pytest.fixture(scope="module")
def b1():
    return load_challenge("b1-first-cache")


# --------------------------------------------------------------------------- challenge files


def test_six_challenges_two_per_level(challenges):
    """The issue asks for at least six: two beginner, two intermediate, two advanced."""
    levels = [c.level for c in challenges]
    assert len(challenges) >= 6
    assert all(levels.count(level) >= 2 for level in LEVELS)
    assert len({c.id for c in challenges}) == len(challenges)


def test_every_challenge_is_complete(challenges):
    """Each has a scenario that loads, a goal, hints, badges and public seeds; its starter policy is valid."""
    for ch in challenges:
        g = ch.goal
        assert 0 < g.target_reduction_pct < 100 and g.sla_p95_ms > 0, ch.id
        assert 0 < g.quality_floor <= 1 and 0 <= g.error_budget < 1, ch.id
        assert len(ch.hints) >= 3 and len(ch.badges) >= 2 and ch.public_seeds, ch.id
        scenario = build_scenario(ch, parse_policy({"pipeline": list(ch.starter_pipeline)}, ch))
        assert scenario.sla.p95_ms == g.sla_p95_ms, ch.id
        assert ch.scenario_path and ch.summary


def test_templates_have_parameters_and_no_outputs(challenges):
    """Papermill needs a `parameters` cell with the names the grader sets; committed without outputs."""
    for ch in challenges:
        nb = nbformat.read(ch.notebook_path, as_version=4)
        params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(params) == 1, ch.id
        for name in ("challenge_path", "policy_path", "preview_requests", "grading"):
            assert f"{name} =" in params[0].source, (ch.id, name)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, ch.id
        assert "lab.policy.submit(pipeline, path=policy_path" in "".join(c.source for c in nb.cells)


def test_challenge_file_errors_name_the_field(tmp_path):
    """A wrong field is one line naming the file and the field, like scenario files."""
    (tmp_path / "x").mkdir()
    path = tmp_path / "x" / "challenge.toml"
    path.write_text('title = "t"\nlevel = "expert"\nscenario = "nope.toml"\npublic_seeds = [1]\n'
                    '[goal]\ntarget_reduction_pct = 10\nsla_p95_ms = 100\n')
    with pytest.raises(lab.ScenarioError, match="scenario: scenario file not found"):
        load_challenge(path)
    with pytest.raises(lab.ScenarioError, match="no such challenge.*did you mean 'b1-first-cache'"):
        load_challenge("b1-first-cach")


# --------------------------------------------------------------------------- policies


def test_policy_stages_come_from_the_registry(b1):
    """Every registered stage name passes the name check (no hard-coded list); others are refused."""
    from lab.grading.challenge import challenge_from_dict

    open_rules = challenge_from_dict({**_raw(b1), "rules": {}}, path=b1.path)
    for name in stage_names():
        try:
            parse_policy({"pipeline": [{"stage": name}]}, open_rules)
        except PolicyError as exc:
            assert "unknown stage" not in str(exc), name
    with pytest.raises(PolicyError, match=r"pipeline\[0\].stage: unknown stage 'cahce'.*did you mean 'cache'"):
        parse_policy({"pipeline": [{"stage": "cahce"}]}, open_rules)


def test_world_fields_are_the_ones_each_stage_declares(b1):
    """The grader locks what a stage module says describes the world (`WORLD_FIELDS`), and keeps no copy."""
    import lab.grading.policy_schema
    from lab.grading.challenge import challenge_from_dict

    assert not hasattr(lab.grading.policy_schema, "WORLD_FIELDS")
    open_rules = challenge_from_dict({**_raw(b1), "rules": {}}, path=b1.path)
    locked = {name: world_fields(name) for name in stage_names() if world_fields(name)}
    assert {"cache", "semantic_cache", "prompt_cache", "batch_api", "cascade", "batch", "compress"} <= set(locked)
    for name, fields in locked.items():
        for field in fields:
            with pytest.raises(PolicyError, match=rf"pipeline\[0\].{field}: describes the world"):
                parse_policy({"pipeline": [{"stage": name, field: 1}]}, open_rules)


def _raw(ch) -> dict:
    import tomllib

    with open(ch.path, "rb") as fh:
        return tomllib.load(fh)


@pytest.mark.parametrize("policy, message", [
    ({"pipeline": [{"stage": "semantic_cache"}]}, "'semantic_cache' is not allowed in this challenge"),
    ({"pipeline": [{"stage": "cache", "hit_latency_ms": 0}]}, r"pipeline\[0\].hit_latency_ms: describes the world"),
    ({"pipeline": [{"stage": "cache", "stale_quality": 1.0}]}, "stale_quality: describes the world"),
    ({"pipeline": [{"stage": "cache", "capacity": -5}]}, r"pipeline\[0\].capacity: expected a whole number >= 1"),
    ({"pipeline": [{"stage": "cache", "colour": "red"}]}, r"pipeline\[0\].colour: unknown field"),
    ({"pipeline": [{"stage": "cache"}] * 4}, "4 stages, this challenge allows at most 3"),
    ({"pipeline": [], "model": "gpt-9-ultra"}, "model: unknown model 'gpt-9-ultra'"),
    ({"pipeline": [], "model": "gpt-4o"}, "'gpt-4o' is not allowed in this challenge"),
    ({"pipeline": [], "challenge": "a1-semantic-quality"}, "this policy is for 'a1-semantic-quality'"),
    ({"pipeline": [], "seeds": [1, 2]}, "seeds: unknown field"),
    ({"pipeline": "cache"}, "expected an array of stage tables"),
    ("cache", "expected a JSON object"),
])
def test_invalid_policies_are_refused_with_the_field(b1, policy, message):
    with pytest.raises(PolicyError, match=message):
        parse_policy(policy, b1)


def test_challenge_rules_on_values():
    """i1 caps the cache at 500 entries (required); i2 keeps prompt caching to the provider's own rules."""
    i1, i2 = load_challenge("i1-fresh-catalog"), load_challenge("i2-prompt-prefix")
    with pytest.raises(PolicyError, match="capacity: this challenge requires it, at most 500"):
        parse_policy({"pipeline": [{"stage": "cache"}]}, i1)
    with pytest.raises(PolicyError, match="capacity: this challenge requires it, at most 500"):
        parse_policy({"pipeline": [{"stage": "cache", "capacity": 501}]}, i1)
    parse_policy({"pipeline": [{"stage": "cache", "capacity": 500}]}, i1)
    with pytest.raises(PolicyError, match="rules: expected one of 'auto', 'anthropic'.*got 'ideal'"):
        parse_policy({"pipeline": [{"stage": "prompt_cache", "rules": "ideal"}]}, i2)
    with pytest.raises(PolicyError, match="ttl_s: describes the world"):
        parse_policy({"pipeline": [{"stage": "prompt_cache", "ttl_s": 86400}]}, i2)
    parse_policy({"pipeline": [{"stage": "prompt_cache", "rules": "anthropic", "anthropic_ttl": "1h"}]}, i2)


def test_cascade_naming_an_unknown_model_is_refused():
    """Models inside stage fields are checked by the stage itself, through the scenario reader."""
    a2 = load_challenge("a2-cost-quality-frontier")
    with pytest.raises(PolicyError, match=r"pipeline\[0\]"):
        parse_policy({"pipeline": [{"stage": "cascade", "models": ["gpt-9-nano", "gpt-4.1"]}]}, a2)


# --------------------------------------------------------------------------- scoring


def test_score_is_the_mean_reduction_when_constraints_hold(b1):
    """Expected numbers from lab.simulate itself, run here seed by seed on the same scenario."""
    policy = parse_policy({"pipeline": [{"stage": "cache", "shared": True}]}, b1)
    seeds = [5, 6]
    ev = evaluate(b1, policy, seeds)
    runs = [lab.simulate(build_scenario(b1, policy), seed=s, requests=b1.requests).summary() for s in seeds]
    assert ev.constraints_met
    assert ev.score == pytest.approx(round(np.mean([r["reduction_pct"] for r in runs]), 2))
    assert ev.metrics["p95_ms"] == pytest.approx(max(r["latency_ms"]["p95"] for r in runs))
    assert ev.metrics["reduction_pct_min"] == pytest.approx(min(r["reduction_pct"] for r in runs))
    assert ev.passed == (ev.score >= b1.goal.target_reduction_pct)
    assert "first-hit" in ev.badges


def test_score_is_zero_when_any_seed_breaks_a_constraint(b1):
    """The empty pipeline saves nothing and the baseline's p95 exceeds b1's 6.5 s SLA on seed 1
    (support-chatbot's baseline p95 is ~6.9 s at 10,000 requests)."""
    ev = evaluate(b1, parse_policy({"pipeline": []}, b1), [1])
    assert not ev.constraints["sla_p95_ms"]["met"] and ev.score == 0.0 and not ev.passed and ev.badges == []
    # a 200-entry cache meets the SLA on seed 1 but not on seed 2 (p95 ~6.54 s): one bad seed is enough
    small = parse_policy({"pipeline": [{"stage": "cache", "capacity": 200}]}, b1)
    assert evaluate(b1, small, [1]).score > 0
    assert evaluate(b1, small, [2]).score == 0
    ev = evaluate(b1, small, [1, 2])
    assert ev.metrics["reduction_pct"] > 20 and ev.score == 0.0 and not ev.constraints_met


def test_badges_need_constraints_and_bounds():
    b = Badge("x", "X", "d", min=(("reduction_pct", 50.0),), max=(("stages", 1),))
    assert b.earned({"reduction_pct": 60, "stages": 1}, True)
    assert not b.earned({"reduction_pct": 60, "stages": 2}, True)
    assert not b.earned({"reduction_pct": 60, "stages": 1}, False)


def test_every_challenge_target_is_reachable_and_the_baseline_is_not_enough():
    """A reference policy per challenge passes on held-out seeds (so targets are fair), and doing
    nothing never passes (so every challenge asks for something)."""
    reference = {
        "b1-first-cache": [{"stage": "cache", "shared": True}],
        "b2-burst-dedup": [{"stage": "dedup", "shared": True}],
        "i1-fresh-catalog": [{"stage": "cache", "policy": "lfu", "capacity": 500}, {"stage": "dedup", "window_s": 10}],
        "i2-prompt-prefix": [{"stage": "prompt_cache", "anthropic_ttl": "1h"}],
        "a1-semantic-quality": [{"stage": "cache", "shared": True},
                                {"stage": "semantic_cache", "threshold": 0.87, "shared": True}],
        "a2-cost-quality-frontier": [{"stage": "cascade", "models": ["gpt-4.1-mini", "gpt-4.1"], "threshold": 0.8}],
    }
    for ch in list_challenges():
        if ch.id not in reference:
            continue
        good = evaluate(ch, parse_policy({"pipeline": reference[ch.id]}, ch), [101, 102], requests=ch.requests)
        assert good.passed, (ch.id, good.metrics, good.constraints)
        nothing = evaluate(ch, parse_policy({"pipeline": []}, ch), [101])
        assert not nothing.passed, ch.id


# --------------------------------------------------------------------------- learner helper, private folder


def test_submit_writes_the_policy_the_grader_reads(tmp_path, b1):
    path = tmp_path / "out" / "policy.json"
    data = lab.policy.submit([{"stage": "cache", "capacity": 5000}], path=path, challenge=b1)
    assert json.loads(path.read_text()) == data
    assert data["challenge"] == "b1-first-cache" and data["pipeline"] == [{"stage": "cache", "capacity": 5000}]
    from lab.grading.policy_schema import read_policy_file

    assert read_policy_file(path, b1).stages == ["cache"]
    with pytest.raises(PolicyError):
        lab.policy.submit([{"stage": "nope"}], path=tmp_path / "bad.json", challenge=b1)
    assert not (tmp_path / "bad.json").exists()


def test_private_folder(tmp_path, root, monkeypatch):
    private = PrivateDir(tmp_path / "private")
    seeds = private.init(["b1-first-cache", "b2-burst-dedup"], seeds_per_challenge=3)
    assert stat.S_IMODE(os.stat(private.seeds_file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(private.path).st_mode) == 0o700
    assert private.seeds("b1-first-cache") == seeds["b1-first-cache"] and len(set(seeds["b1-first-cache"])) == 3
    assert private.init(["b1-first-cache"])["b1-first-cache"] == seeds["b1-first-cache"]   # kept on re-init
    monkeypatch.setenv("COSTLAB_PRIVATE_SEEDS", "b1-first-cache=7,8")
    assert private.seeds("b1-first-cache") == [7, 8]
    with pytest.raises(lab.CostlabError, match="inside"):
        PrivateDir(root / "challenges" / "secret").ensure_outside(root)
    with pytest.raises(lab.CostlabError, match="no private seeds for 'zz'"):
        PrivateDir(tmp_path / "empty").seeds("zz")


def test_kernelspec_runs_the_graders_python(tmp_path):
    """The kernel papermill starts is this interpreter, whatever kernelspecs the machine has."""
    write_kernelspec(tmp_path)
    spec = json.loads((tmp_path / "kernels" / KERNEL_NAME / "kernel.json").read_text())
    assert spec["argv"][:3] == [sys.executable, "-m", "ipykernel_launcher"]


def test_compare_puts_candidates_side_by_side_as_preview_scores_them(b1):
    candidates = {"mine": [{"stage": "cache", "capacity": 5000, "shared": True}], "none": []}
    comparison = lab.policy.compare(candidates, b1, requests=600)
    table = comparison.table
    assert list(table.index) == ["mine", "none"] and comparison.target_pct == b1.goal.target_reduction_pct
    for name, pipeline in candidates.items():     # the same numbers preview gives, candidate by candidate
        scored = lab.policy.preview(pipeline, b1, requests=600, progress=False)
        assert table.loc[name, "reduction_pct"] == scored.metrics["reduction_pct"]
        assert bool(table.loc[name, "constraints_met"]) == scored.constraints_met
    assert table.loc["mine", "reduction_pct"] > table.loc["none", "reduction_pct"]
    html = comparison._repr_html_()
    assert html.count("<svg") == 1 and "<table" in html and "mine" in html and "$" not in html
