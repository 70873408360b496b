"""costlab: a learning lab and SimPy simulator for the cost of AI APIs.

    import lab
    result = lab.simulate(lab.load_scenario("scenarios/support-chatbot.toml"), seed=0)
    result.summary()      # the `costlab run --json` object
    result.ledger         # one row per request (pandas.DataFrame)
"""

from lab.errors import CostlabError, PricingError, ScenarioError, TraceError
from lab.loader import load_scenario, scenario_from_dict
from lab.result import Result
from lab.scenario import Scenario
from lab.sim import simulate
from lab.sweep import sweep

__all__ = ["CostlabError", "PricingError", "Result", "Scenario", "ScenarioError", "TraceError",
           "load_scenario", "scenario_from_dict", "simulate", "sweep"]
