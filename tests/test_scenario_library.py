"""The scenario library's stories: each header's daily cost is what the scenario actually costs.

(Loading and running every scenario is tests/test_scenario_errors.py's job.) The figure a
story quotes ("Cost without optimization: about $X per day") must match the simulated
no-optimization cost per request times the scenario's long-run requests per day, within the
seed-to-seed spread of a short run (15 %). The coding agent's generated trace must be the
bytes its generator writes.
"""

from __future__ import annotations

import importlib.util
import re

import pytest

import lab
from lab.projections import project

LIBRARY = ("support-chatbot", "catalog-price-updates", "bursty-social-feed", "rag-semantic-cache",
           "coding-agent-tool-loops")
COST_LINE = re.compile(r"# Cost without optimization: about \$([0-9,]+) per (day|busy hour)")


def story_cost_per_day(text: str) -> float:
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    found = re.search(r"\$([0-9,]+) per day", header[header.index("Cost without optimization"):])
    return float(found.group(1).replace(",", ""))


@pytest.mark.parametrize("name", LIBRARY)
def test_story_header_states_who_cost_and_why(root, name):
    text = (root / "scenarios" / f"{name}.toml").read_text()
    header = text[: text.index("name = ")]
    for marker in ("Who:", "Cost without optimization: about $", "What matters and why:"):
        assert marker in header, (name, marker)
    assert COST_LINE.search(header), name


@pytest.mark.parametrize("name", LIBRARY)
def test_story_daily_cost_matches_the_simulation(root, name):
    path = root / "scenarios" / f"{name}.toml"
    stated = story_cost_per_day(path.read_text())
    table = project(lab.load_scenario(path), seeds=2, requests=3000).table.set_index("horizon")
    assert table.loc["day", "baseline_usd"] == pytest.approx(stated, rel=0.15), name


def test_coding_agent_trace_is_what_its_generator_writes(root):
    folder = root / "scenarios" / "traces"
    spec = importlib.util.spec_from_file_location("coding_agent_trace", folder / "coding_agent_trace.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.render(module.generate()) == (folder / "coding-agent-loops.jsonl").read_text()
