"""The scenarios of issue 19's patterns: each tells its story and runs through the ablation.

(Each pattern's numbers are tested where the pattern lives: tests/stages/test_degradation.py,
test_tiered_cache.py, test_priorities.py, test_reservation.py, tests/test_sessions.py and
tests/test_routes.py.) Here: the header says who, what it costs and why; `lab.ablation`
runs every stage alone and all together on the same requests, and "all together" is the
scenario's own run.
"""

from __future__ import annotations

import pytest

import lab
from lab.ablation import ablation

PATTERNS = ("cache-store-outage", "gateway-routes", "tiered-cache-warm-prefetch", "priority-shedding",
            "chat-sessions", "budget-reservation-burst")


@pytest.mark.parametrize("name", PATTERNS)
def test_each_pattern_has_a_story_and_the_ablation_covers_its_stages(root, name):
    path = root / "scenarios" / f"{name}.toml"
    header = path.read_text()[: path.read_text().index("name = ")]
    for marker in ("Who:", "Cost without optimization: about $", "What matters and why:", "Try:"):
        assert marker in header, (name, marker)
    scenario = lab.load_scenario(path)
    table = ablation(scenario, requests=1500)
    assert len(table) == len(scenario.pipeline) + 2
    together = lab.simulate(scenario, seed=0, requests=1500, progress=False).summary()
    assert table.loc["all together", "cost_usd"] == pytest.approx(together["cost_usd"], rel=1e-12)
