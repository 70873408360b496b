"""The quality model: how well a model answers a request of a given difficulty.

Each request carries a difficulty d in [0, 1] (`[traffic] difficulty = {...}`); each model a
skill s, its `quality` in lab/data/models.toml. A model's expected answer quality is a
logistic curve falling through 0.5 at d = s:

    quality(d) = 1 / (1 + exp(SLOPE * (d - s)))

so a strong model answers hard requests well and every model answers easy ones well —
the shape behind routers and cascades (RouteLLM: a weak model suffices for most requests).
The curve is illustrative, not a benchmark: calibrate `quality` from your own evals.
Without a difficulty in the scenario, the quality model is off and answers score 1.0.
"""

from __future__ import annotations

import numpy as np

SLOPE = 12.0


def quality_curve(skill: float, difficulty):
    """Expected quality of a model with `skill` on requests of `difficulty` (scalar or array)."""
    return 1.0 / (1.0 + np.exp(SLOPE * (np.asarray(difficulty, dtype=np.float64) - skill)))


class QualityModel:
    """Scores each answered request by the serving model's curve at the request's difficulty."""

    def __init__(self, requests):
        self.difficulty = requests.difficulty

    def score(self, provider, i: int) -> float:
        return float(quality_curve(provider.info.quality, self.difficulty[i]))

    def expected(self, provider, i: int) -> float:
        """What a router can know before sending: the same expected quality."""
        return self.score(provider, i)
