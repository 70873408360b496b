"""Running the gateway: `serve` in the foreground (the CLI), `running` in a background thread (tests, lessons)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

from lab.errors import ConfigError
from lab.gateway.app import Gateway
from lab.gateway.config import GatewayConfig


def _server(gateway: Gateway, host: str, port: int):
    import uvicorn  # reason: optional ASGI server, in the `gateway` extra

    # no access log: a Gemini SDK puts its key (here, the learner's token) in the query string
    config = uvicorn.Config(gateway.app(), host=host, port=port, access_log=False, log_level="warning",
                            lifespan="on", timeout_keep_alive=30, backlog=2048)
    return uvicorn.Server(config)


def serve(config: GatewayConfig) -> None:
    """Serve until interrupted (Ctrl-C), on the host and port the config names."""
    gateway = Gateway(config)
    print(f"costlab gateway on http://{config.host}:{config.port}  "
          f"(openai: /openai/v1, anthropic: /anthropic, google: /google; /metrics, /healthz); store {config.store}",
          flush=True)
    _server(gateway, config.host, config.port).run()


@contextlib.contextmanager
def running(config: GatewayConfig, gateway: Gateway | None = None):
    """A gateway on 127.0.0.1 (an ephemeral port) in a background thread; yields its base URL."""
    gateway = gateway or Gateway(config)
    # proto IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say so (else a 40 ms stall per response)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = _server(gateway, "127.0.0.1", 0)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="costlab-gateway", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise ConfigError("the gateway did not start within 10 s")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", gateway
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
