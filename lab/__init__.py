"""costlab: a learning lab and SimPy simulator for the cost of AI APIs."""

from lab.errors import CostlabError, PricingError, ScenarioError, TraceError

__all__ = ["CostlabError", "PricingError", "ScenarioError", "TraceError"]
