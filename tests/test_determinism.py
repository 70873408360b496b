"""The same seed gives the same numbers bit for bit; another seed gives other numbers."""

from __future__ import annotations

import json

import lab
from lab.cli import main


def run(seed):
    s = lab.load_scenario("scenarios/support-chatbot.toml")
    return lab.simulate(s, seed=seed, requests=20_000, progress=False)


def test_same_seed_same_json_and_ledger(root, monkeypatch):
    monkeypatch.chdir(root)
    a, b = run(5), run(5)
    assert json.dumps(a.summary()) == json.dumps(b.summary())
    assert a.ledger.equals(b.ledger)


def test_different_seed_differs(root, monkeypatch):
    monkeypatch.chdir(root)
    a, b = run(5), run(6)
    assert a.summary()["cost_usd"] != b.summary()["cost_usd"]
    assert not a.ledger["t_arrival_s"].equals(b.ledger["t_arrival_s"])


def test_cli_json_is_byte_identical(root, tmp_path, monkeypatch):
    monkeypatch.chdir(root)
    for name in ("a.json", "b.json"):
        assert main(["run", "scenarios/support-chatbot.toml", "--seed", "3", "--requests", "5000",
                     "--json", str(tmp_path / name)]) == 0
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
