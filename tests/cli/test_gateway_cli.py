"""`costlab gateway learner add|list|revoke` and `usage --ledger`, and `costlab twin` reading a gateway ledger."""

from __future__ import annotations

import openai
import pytest

from lab.cli import main
from lab.gateway import GatewayStore, config_from_dict, running
from lab.providers.fake_server import FakeProviderServer

KEY_ENV = "COSTLAB_TEST_CLI_KEY"


def test_learners_usage_and_a_twin_of_the_ledger(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-cli-test")
    config_path = tmp_path / "gateway.toml"
    with FakeProviderServer(port=0) as fake:
        config_path.write_text(f'[gateway]\nstore = "class.db"\n[learners]\ndaily_usd = 0.25\n[[upstreams]]\n'
                               f'provider = "openai"\nbase_url = "{fake.base_url("openai")}"\nkey_env = "{KEY_ENV}"\n')
        assert main(["gateway", "learner", "add", "ann", "--config", str(config_path)]) == 0
        token = capsys.readouterr().out.split()[-1]
        assert token.startswith("clab_")
        assert main(["gateway", "learner", "add", "ann", "--config", str(config_path)]) == 2   # one line, exit 2
        assert "exists" in capsys.readouterr().err
        store = GatewayStore(str(tmp_path / "class.db"))
        assert store.learner("ann").daily_usd == 0.25                     # the [learners] default
        config = config_from_dict({"gateway": {"store": str(tmp_path / "class.db")}, "upstreams": [
            {"provider": "openai", "base_url": fake.base_url("openai"), "key_env": KEY_ENV}]})
        with running(config) as (url, _):
            client = openai.OpenAI(api_key=token, base_url=f"{url}/openai/v1", max_retries=0)
            for k in range(30):
                client.chat.completions.create(model="gpt-4o-mini", max_tokens=30,
                                               messages=[{"role": "user", "content": f"question {k % 7}"}])
    assert main(["gateway", "learner", "list", "--config", str(config_path)]) == 0
    assert "ann" in capsys.readouterr().out
    ledger = tmp_path / "ledger.parquet"
    assert main(["gateway", "usage", "--learner", "ann", "--ledger", str(ledger), "--config", str(config_path)]) == 0
    out = capsys.readouterr().out
    assert "ann" in out and "30 rows" in out
    assert main(["twin", str(ledger), "--out", str(tmp_path / "twin.toml")]) == 0
    assert (tmp_path / "twin.toml").is_file()
    capsys.readouterr()
    assert main(["gateway", "learner", "revoke", "ann", "--store", str(tmp_path / "class.db")]) == 0
    assert main(["gateway", "usage", "--learner", "nobody", "--config", str(config_path)]) == 2


@pytest.mark.parametrize("argv", [["gateway", "serve", "--config", "/nonexistent/gateway.toml"],
                                  ["gateway", "usage", "--config", "/nonexistent/gateway.toml"]])
def test_a_missing_config_is_one_line(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "file not found" in err
