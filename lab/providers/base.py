"""The interface every provider offers the simulation: `MockProvider` and `LiveProvider` both have it.

A provider is one `[[providers]]` entry being served during a run. The simulation hands it
request indexes (`submit`), and it answers each one later through `sim.complete(i, ...)`;
a stage may also ask it for a fetch no request waits for (`submit_background`, e.g. an
early cache refresh), answered through `sim.background_done(i, provider)`. Stages and the
summary read who it is (`name`, `model`, `index`, `config`, `info`) and how many calls it
made (`calls`).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from lab.models import ModelInfo
from lab.scenario import Provider as ProviderEntry


@runtime_checkable
class Provider(Protocol):
    """One provider/model endpoint serving a run's requests."""

    name: str                 # genai-prices provider id: "openai", "anthropic", "google"
    model: str
    index: int                # its position in the scenario's providers (the ledger's provider code)
    config: ProviderEntry     # the scenario's entry it serves
    info: ModelInfo           # typical latency, speed, limits and quality (lab/data/models.toml)
    calls: int                # calls made so far

    def submit(self, i: int) -> None:
        """Request i arrives at the provider; its answer comes back through `sim.complete`."""

    def submit_background(self, i: int) -> None:
        """A fetch on behalf of request i that no one waits for; done through `sim.background_done`."""
