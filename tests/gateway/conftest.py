"""A fake upstream (costlab's fake server) and a gateway in front of it, on 127.0.0.1."""

from __future__ import annotations

import contextlib

import pytest

from lab.gateway import config_from_dict, running
from lab.providers.fake_server import FakeProviderServer

#: recognisable, so a leak is found by plain substring search
FAKE_KEY = "sk-costlab-UPSTREAM-KEY-must-never-leak-7f3a9c"
KEY_ENV = "COSTLAB_TEST_UPSTREAM_KEY"


@pytest.fixture
def fake():
    with FakeProviderServer(port=0) as server:
        yield server


def gateway_config(fake: FakeProviderServer, store: str, pipeline=(), **sections):
    data = {"gateway": {"store": store}, "pipeline": list(pipeline),
            "upstreams": [{"provider": p, "base_url": fake.base_url(p), "key_env": KEY_ENV}
                          for p in ("openai", "anthropic", "google")], **sections}
    return config_from_dict(data)


@pytest.fixture
def gateway(fake, tmp_path, monkeypatch):
    """`start(pipeline=..., **sections)` -> (base URL, Gateway); stopped at the end of the test."""
    monkeypatch.setenv(KEY_ENV, FAKE_KEY)
    with contextlib.ExitStack() as stack:
        def start(pipeline=(), store=None, **sections):
            config = gateway_config(fake, store or str(tmp_path / f"gw{len(stack._exit_callbacks)}.db"),
                                    pipeline, **sections)
            return stack.enter_context(running(config))
        yield start
