"""A live-backed simulation: `LiveProvider` serves simulated requests with real SDK calls.

Built by hand (the scenario `kind = "live" | "replay"` switch is wired by sim.py): the same
stream, the same stages and ledger arrays, but each request that reaches the provider is
sent to the fake server, its measured latency is its service time, and the provider's own
usage (cached tokens) and billed cost are what the run records.
"""

from __future__ import annotations

import dataclasses
import socket

import numpy as np
import pytest
from helpers import scenario

from lab.ledger import OK, REJECTED
from lab.pricing import model_prices
from lab.providers.fake_server import FakeProviderServer
from lab.providers.sdk import KEY_ENV_VARS, LiveProvider, synthesize_chat
from lab.sim import Simulation
from lab.tokens import count_messages
from lab.traffic import make_requests

LATENCY_MS = 25.0


class LiveConfig:
    """A scenario provider entry plus the fields it will carry for kind = "live" | "replay".

    Every other field (concurrency, service tier, ...) is the scenario's own, so the
    simulation sees a provider entry like any other.
    """

    def __init__(self, name, model, kind="live", base_url=None, cassette=None, budget_usd=1.0, concurrency=2):
        self._entry = dataclasses.replace(scenario(requests=1).providers[0], name=name, model=model,
                                          concurrency=concurrency)
        self.kind, self.base_url, self.cassette, self.budget_usd = kind, base_url, cassette, budget_usd

    def __getattr__(self, field):
        return getattr(self._entry, field)


@pytest.fixture
def fake():
    with FakeProviderServer(port=0, latency_ms=LATENCY_MS) as server:
        yield server


@pytest.fixture(autouse=True)
def no_keys(monkeypatch):
    for names in KEY_ENV_VARS.values():   # the fake server on 127.0.0.1 needs none
        for name in names:
            monkeypatch.delenv(name, raising=False)


def small_stream(n=12, pipeline=()):
    sc = scenario(pipeline=pipeline, requests=n, traffic={
        "prompts": {"catalog": 3, "popularity": {"dist": "zipf", "alpha": 1.0}},
        "input_tokens": {"dist": "constant", "value": 300},
        "output_tokens": {"dist": "constant", "value": 20},
        "prefix": {"system_tokens": 1100, "variants": 1}})
    return sc, make_requests(sc, np.random.default_rng(0), None)


def live_sim(sc, stream, config, optimized=False):
    sim = Simulation(sc, stream, 0, optimized=optimized, progress=False)
    sim.providers = [LiveProvider(sim, config, 0, np.random.default_rng(0))]
    return sim


def test_synthesized_prompts_have_the_streams_token_counts():
    sc, stream = small_stream()
    for provider, model in [("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4-6"),
                            ("google", "gemini-2.5-flash")]:
        for i in range(4):
            chat = synthesize_chat(stream, i, provider, model)
            if provider == "openai":
                messages = [{"role": "system", "content": chat.system}, {"role": "user", "content": chat.messages[0][1]}]
                counted = count_messages(messages, model, "openai")
            elif provider == "anthropic":
                counted = count_messages([{"role": "user", "content": chat.messages[0][1]}], model, "anthropic",
                                         system=chat.system)
            else:
                counted = count_messages([{"parts": [{"text": chat.messages[0][1]}]}], model, "google",
                                         system=chat.system)
            assert counted == stream.input_tokens[i]
    same = [i for i in range(len(stream)) if stream.prompt[i] == stream.prompt[0]]
    assert len(same) > 1 and synthesize_chat(stream, same[0], "openai", "gpt-4o-mini") == \
        synthesize_chat(stream, same[1], "openai", "gpt-4o-mini")


def test_requests_are_sent_for_real_and_measured(fake, tmp_path):
    sc, stream = small_stream()
    config = LiveConfig("openai", "gpt-4o-mini", base_url=fake.base_url("openai"), cassette=str(tmp_path / "c.jsonl"))
    sim = live_sim(sc, stream, config)
    run = sim.run_to_end()
    provider = sim.providers[0]
    assert (run.outcome == OK).all() and fake.calls_total() == len(stream) == provider.calls
    assert (provider.measured_input_tokens == stream.input_tokens).all()         # the fake counted what we sent
    assert (provider.measured_output_tokens == stream.output_tokens).all()       # max_tokens = the request's output
    # the shared 1,100-token system prompt is cached by the (fake) provider after the first call
    assert run.cached_input_tokens[0] == 0 and (run.cached_input_tokens[1:] >= 1024).all()
    # measured latency is the service time, and the simulated clock follows it
    assert (run.service_ms >= LATENCY_MS).all() and (run.service_ms < LATENCY_MS + 1000).all()
    latency_ms = (run.t_done_s - run.t_dispatch_s) * 1000.0
    assert latency_ms == pytest.approx(run.queue_ms + run.service_ms, abs=1e-3)
    # billed cost: genai-prices on the fake's usage, equal to lab's vectorized prices on the same usage
    assert provider.measured_cost_usd.sum() == pytest.approx(provider.session.spent_usd, rel=1e-12)
    modeled = model_prices("openai", "gpt-4o-mini").cost_usd(provider.measured_input_tokens,
                                                             provider.measured_output_tokens, run.cached_input_tokens)
    assert provider.measured_cost_usd == pytest.approx(modeled, rel=1e-9)


def test_replay_gives_the_same_run_with_no_network(fake, tmp_path, monkeypatch):
    sc, stream = small_stream()
    path = str(tmp_path / "c.jsonl")
    live = live_sim(sc, stream, LiveConfig("anthropic", "claude-sonnet-4-6", base_url=fake.base_url("anthropic"),
                                           cassette=path))
    live_run = live.run_to_end()
    fake.stop()
    monkeypatch.setattr(socket.socket, "connect", lambda self, a: (_ for _ in ()).throw(OSError("blocked")))
    replay = live_sim(sc, stream, LiveConfig("anthropic", "claude-sonnet-4-6", kind="replay", cassette=path))
    replay_run = replay.run_to_end()
    for name in ("outcome", "cached_input_tokens", "cache_write_tokens", "service_ms", "queue_ms", "t_done_s"):
        assert (getattr(live_run, name) == getattr(replay_run, name)).all(), name
    assert (live.providers[0].measured_cost_usd == replay.providers[0].measured_cost_usd).all()


def test_the_budget_rejects_what_it_cannot_afford(fake):
    sc, stream = small_stream()
    one_call_worst = model_prices("openai", "gpt-4o-mini").cost_usd([int(stream.input_tokens[0]) + 10], [20])[0]
    config = LiveConfig("openai", "gpt-4o-mini", base_url=fake.base_url("openai"), budget_usd=3.5 * one_call_worst)
    sim = live_sim(sc, stream, config)
    run = sim.run_to_end()
    provider = sim.providers[0]
    assert (run.outcome == OK).sum() == fake.calls_total() >= 3
    assert (run.outcome == REJECTED).sum() == provider.refused > 0
    assert provider.session.spent_usd <= config.budget_usd
    assert (provider.measured_cost_usd[run.outcome == REJECTED] == 0).all()


def test_a_run_and_its_baseline_share_one_session_and_stages_still_apply(fake):
    sc, stream = small_stream(n=20, pipeline=[{"stage": "cache", "policy": "lru", "capacity": 100}])
    config = LiveConfig("openai", "gpt-4o-mini", base_url=fake.base_url("openai"))
    optimized = live_sim(sc, stream, config, optimized=True)
    run = optimized.run_to_end()
    baseline = live_sim(sc, stream, config)
    baseline.run_to_end()
    assert optimized.providers[0].session is baseline.providers[0].session
    cache_hits = int((run.answered_by >= 0).sum())
    assert cache_hits > 0                                          # the response cache answered repeats
    assert optimized.providers[0].calls == len(stream) - cache_hits
    assert fake.calls_total() == optimized.providers[0].calls + len(stream)
    _, other = small_stream(n=20)
    assert live_sim(sc, other, config).providers[0].session is not baseline.providers[0].session


def test_a_live_provider_needs_a_budget(fake):
    from lab.errors import ConfigError

    sc, stream = small_stream()
    with pytest.raises(ConfigError, match="budget_usd"):
        live_sim(sc, stream, LiveConfig("openai", "gpt-4o-mini", base_url=fake.base_url("openai"), budget_usd=None))


def test_a_failed_call_is_an_error_with_its_status(fake):
    from lab.ledger import ERROR

    sc, stream = small_stream(n=6)
    fake.fail_next(1, 400)
    sim = live_sim(sc, stream, LiveConfig("google", "gemini-2.5-flash", base_url=fake.base_url("google")))
    run = sim.run_to_end()
    assert run.outcome[0] == ERROR and run.status[0] == 400 and sim.providers[0].failed == 1
    assert (run.outcome[1:] == OK).all() and (run.status[1:] == 200).all()
    assert sim.providers[0].measured_cost_usd[0] == 0 and (sim.providers[0].measured_cost_usd[1:] > 0).all()
