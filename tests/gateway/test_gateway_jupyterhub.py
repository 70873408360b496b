"""Hub-token authentication against a real JupyterHub, started by the test.

The hub is JupyterHub itself (from the registry) with its REST API on 127.0.0.1; only its
HTTP proxy is replaced by routes kept in memory (configurable-http-proxy is a Node app, and
the hub's own API, which is all the gateway asks, does not pass through it). A learner's
hub API token is created through the hub's REST API, as a JupyterHub user would make one on
/hub/token, and used where the SDK expects its key.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time

import httpx
import pytest

pytest.importorskip("jupyterhub")
openai = pytest.importorskip("openai")

from lab.gateway import Gateway, config_from_dict, running  # noqa: E402
from tests.gateway.conftest import FAKE_KEY, KEY_ENV  # noqa: E402

ADMIN_TOKEN = "costlab-test-admin-service-token-5b0e1c"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


HUB_CONFIG = '''
from jupyterhub.proxy import Proxy


class RoutesInMemory(Proxy):
    """No HTTP proxy process: the hub keeps its route table here."""

    should_start = False
    routes = {{}}

    async def start(self):
        pass

    async def stop(self):
        pass

    async def add_route(self, routespec, target, data):
        self.routes[routespec] = {{"routespec": routespec, "target": target, "data": data}}

    async def delete_route(self, routespec):
        self.routes.pop(routespec, None)

    async def get_all_routes(self):
        return dict(self.routes)


c = get_config()  # noqa: F821
c.JupyterHub.proxy_class = RoutesInMemory
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allowed_users = {{"zoe", "yann"}}
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {public_port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.JupyterHub.db_url = "sqlite:///{folder}/hub.sqlite"
c.JupyterHub.cookie_secret_file = "{folder}/cookie_secret"
c.JupyterHub.pid_file = "{folder}/hub.pid"
# the README's snippet (the gateway as a hub service), plus an admin service that makes the test's tokens
c.JupyterHub.services = [{{"name": "costlab-gateway"}},
                         {{"name": "test-admin", "api_token": "{admin_token}"}}]
c.JupyterHub.load_roles = [{{"name": "test-admin", "scopes": ["admin:users", "tokens"], "services": ["test-admin"]}}]
'''


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """A running JupyterHub: yields its API URL; its log is shown if it fails to start."""
    folder = tmp_path_factory.mktemp("hub")
    hub_port, public_port = _free_port(), _free_port()
    (folder / "jupyterhub_config.py").write_text(textwrap.dedent(HUB_CONFIG.format(
        public_port=public_port, hub_port=hub_port, folder=folder, admin_token=ADMIN_TOKEN)))
    log = open(folder / "hub.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "jupyterhub", "-f", str(folder / "jupyterhub_config.py")],
                            cwd=folder, stdout=log, stderr=subprocess.STDOUT)
    api = f"http://127.0.0.1:{hub_port}/hub/api"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{api}/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("JupyterHub did not start:\n" + (folder / "hub.log").read_text()[-3000:])
            time.sleep(0.25)
        yield api
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def hub_token(api: str, user: str) -> str:
    """A new API token of `user`, made through the hub's REST API."""
    r = httpx.post(f"{api}/users/{user}/tokens", json={"note": "costlab gateway test"},
                   headers={"authorization": f"token {ADMIN_TOKEN}"}, timeout=10)
    r.raise_for_status()
    return r.json()["token"]


def test_a_real_hub_token_is_a_learner_and_a_made_up_one_is_refused(hub, fake, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, FAKE_KEY)
    config = config_from_dict({"gateway": {"store": str(tmp_path / "hub.db"), "hub_api_url": hub},
                               "learners": {"daily_usd": 0.25},
                               "upstreams": [{"provider": "openai", "base_url": fake.base_url("openai"),
                                              "key_env": KEY_ENV}]})
    zoe_token, yann_token = hub_token(hub, "zoe"), hub_token(hub, "yann")
    with running(config) as (url, gw):
        chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
        zoe = openai.OpenAI(api_key=zoe_token, base_url=f"{url}/openai/v1", max_retries=0)
        answer = zoe.chat.completions.with_raw_response.create(**chat)
        assert answer.headers["x-costlab-cache"] in ("off", "miss")
        assert answer.parse().choices[0].message.content
        learner = gw.store.learner("zoe")
        assert learner.source == "hub" and learner.daily_usd == 0.25      # the [learners] defaults
        openai.OpenAI(api_key=yann_token, base_url=f"{url}/openai/v1", max_retries=0).chat.completions.create(**chat)
        usage = {r["learner"]: r for r in gw.store.usage().to_dict("records")}
        assert usage["zoe"]["calls"] == 1 and usage["yann"]["calls"] == 1       # each billed to their own name
        # a token the hub never issued, and a hub token of the wrong shape, are refused in the SDK's own way
        for bad in ("0" * 32, zoe_token[:-2] + "xx"):
            with pytest.raises(openai.AuthenticationError):
                openai.OpenAI(api_key=bad, base_url=f"{url}/openai/v1", max_retries=0).chat.completions.create(**chat)
        # a learner the gateway revoked stays refused though the hub still vouches for the token
        gw.store.revoke("zoe")
        with pytest.raises(openai.AuthenticationError):
            zoe.chat.completions.create(**chat)


def test_as_a_hub_service_it_takes_the_hubs_api_and_prefix_from_the_environment(hub, fake, tmp_path):
    """What JupyterHub sets for a managed service (JUPYTERHUB_SERVICE_NAME, _PREFIX, JUPYTERHUB_API_URL):
    no hub_api_url in the file, and the endpoints answer under /services/NAME/ (the hub's proxy
    forwards that path unchanged) as well as at the root."""
    config = config_from_dict({"gateway": {"store": str(tmp_path / "svc.db")},
                               "upstreams": [{"provider": "openai", "base_url": fake.base_url("openai"),
                                              "key_env": KEY_ENV}]})
    env = {KEY_ENV: FAKE_KEY, "JUPYTERHUB_SERVICE_NAME": "costlab-gateway", "JUPYTERHUB_API_URL": hub,
           "JUPYTERHUB_SERVICE_PREFIX": "/services/costlab-gateway/"}
    token = hub_token(hub, "zoe")
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    with running(config, Gateway(config, env=env)) as (url, gw):
        for base in (f"{url}/services/costlab-gateway/openai/v1", f"{url}/openai/v1"):
            openai.OpenAI(api_key=token, base_url=base, max_retries=0).chat.completions.create(**chat)
        assert httpx.get(f"{url}/services/costlab-gateway/healthz").json()["status"] == "ok"
        assert gw.store.learner("zoe").source == "hub"
        assert gw.store.usage("zoe").to_dict("records")[0]["calls"] == 2
