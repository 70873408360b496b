"""What a mock provider needs beyond prices: latency, throughput, limits, quality.

Read from `lab/data/models.toml`, where every number's source is stated (prompt-caching rules
are in the rule book, `lab.provider_rules`). A model with no
entry falls back to its provider's defaults (and says so in `ModelInfo.source`).
"""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True)
class ModelInfo:
    """Typical behaviour of one model on its provider's public API."""

    provider: str
    model: str
    ttft_ms: float
    tokens_per_s: float
    rpm: float
    tpm: float
    quality: float
    source: str


@functools.lru_cache(maxsize=1)
def _table() -> dict:
    return tomllib.loads(resources.files("lab").joinpath("data/models.toml").read_text())


def model_info(provider: str, model: str) -> ModelInfo:
    """The model's entry, or its provider's defaults when the data file has none."""
    table = _table()
    base = dict(table["defaults"].get(provider, table["defaults"]["openai"]))
    own = table["models"].get(f"{provider}/{model}")
    if own:
        base.update(own)
    source = "lab/data/models.toml" if own else f"lab/data/models.toml defaults for {provider}"
    return ModelInfo(provider=provider, model=model, source=source, **base)
