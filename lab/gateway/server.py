"""Running the gateway: `serve` in the foreground (the CLI), `running` in a background thread (tests, lessons)."""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import threading
import time

from lab.errors import ConfigError
from lab.gateway.app import Gateway
from lab.gateway.config import GatewayConfig
from lab.gateway.recorder import Recorder

BACKLOG = 2048


def _server(gateway: Gateway, host: str, port: int):
    import uvicorn  # reason: optional ASGI server, in the `gateway` extra

    # no access log: a Gemini SDK puts its key (here, the learner's token) in the query string
    config = uvicorn.Config(gateway.app(), host=host, port=port, access_log=False, log_level="warning",
                            lifespan="on", timeout_keep_alive=30, backlog=BACKLOG)
    return uvicorn.Server(config)


def _listen(host: str, port: int) -> socket.socket:
    """A bound TCP socket (port 0: any free one). Made with proto IPPROTO_TCP, since asyncio sets
    TCP_NODELAY only on sockets that say so; without it every keep-alive response stalls ~40 ms."""
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)[0]
        sock = socket.socket(info[0], socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(info[4])
        sock.listen(BACKLOG)   # early: a client that connects before the loop runs waits in the queue
    except OSError as exc:
        raise ConfigError(f"gateway: cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    return sock


def serve(config: GatewayConfig) -> None:
    """Serve until interrupted (Ctrl-C or SIGTERM), on the host and port the config names; every call
    also lands in the recorded run of the config's experiment (flushed once more on the way out)."""
    gateway = Gateway(config)
    sock = _listen(config.host, config.port)
    host, port = sock.getsockname()[:2]
    recorder = Recorder.for_config(gateway.store, config)
    recording = f"; recorded run {recorder.run_id} of experiment {config.experiment!r}" if recorder else ""
    print(f"costlab gateway on http://{host}:{port}  (openai: /openai/v1, anthropic: /anthropic, "
          f"google: /google; /metrics, /healthz); store {_shown(config.store)}{recording}", flush=True)
    if recorder:
        recorder.start()
    # uvicorn re-raises the SIGTERM it shut down on; as SystemExit the final flush below still runs
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        _server(gateway, config.host, port).run(sockets=[sock])
    finally:
        if recorder:
            recorder.stop()


def _exit_on_signal(signum, _frame) -> None:
    raise SystemExit(128 + signum)


def _shown(store: str) -> str:
    """A store URL without its password."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", store)


class BackgroundGateway:
    """A gateway on 127.0.0.1 (an ephemeral port) in a background thread, for tests and lessons.

    `start()` returns it with `.url`, `.gateway` and `.recorder` (None when the config's experiment
    is "") set; `stop()` ends it and flushes the ledger into the recorded run. As a context manager,
    `running(config)` yields `(url, gateway)`.
    """

    def __init__(self, config: GatewayConfig, gateway: Gateway | None = None):
        self.config = config
        self.gateway = gateway or Gateway(config)
        self.url: str | None = None
        self.recorder: Recorder | None = None
        self._server = self._thread = self._sock = None

    def start(self) -> BackgroundGateway:
        self.recorder = Recorder.for_config(self.gateway.store, self.config)
        if self.recorder:
            self.recorder.start()
        self._sock = _listen("127.0.0.1", 0)
        self._server = _server(self.gateway, "127.0.0.1", 0)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]},
                                        name="costlab-gateway", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                self.stop()
                raise ConfigError("the gateway did not start within 10 s")
            time.sleep(0.01)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
            self._sock.close()
            self._server = None
        if self.recorder is not None:
            self.recorder.stop()
            self.recorder = None


@contextlib.contextmanager
def running(config: GatewayConfig, gateway: Gateway | None = None):
    """A background gateway for the `with` block; yields `(url, gateway)`."""
    background = BackgroundGateway(config, gateway).start()
    try:
        yield background.url, background.gateway
    finally:
        background.stop()
