"""Running the gateway: `serve` in the foreground (the CLI), `running` in a background thread (tests, lessons)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import sys
import threading
import time

from lab.errors import ConfigError
from lab.gateway.app import Gateway
from lab.gateway.config import GatewayConfig
from lab.gateway.recorder import POLL_S, Recorder
from lab.gateway.store import GatewayStore

BACKLOG = 2048


def _server(gateway: Gateway, host: str, port: int):
    import uvicorn  # reason: optional ASGI server, in the `gateway` extra

    # no access log: a Gemini SDK puts its key (here, the learner's token) in the query string
    config = uvicorn.Config(gateway.app(), host=host, port=port, access_log=False, log_level="warning",
                            lifespan="on", timeout_keep_alive=30, backlog=BACKLOG, http="httptools")
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
    also lands in the recorded run of the config's experiment (flushed once more on the way out).

    With `workers = N` the listening socket is made here and N forked processes accept on it: one
    address, N cores. Caps, spend and the ledger are rows in the store, so they hold across the
    processes; the response cache, dedup and rpm buckets are each process's own. A keeper process
    of its own (`_keep`) copies every process's rows into the recorded run and runs SQLite's WAL
    checkpoints, so neither shares a serving process's GIL or lands in one of its commits.
    """
    gateway = Gateway(config)            # keys and store checked (and its tables made) before any fork
    sock = _listen(config.host, config.port)
    host, port = sock.getsockname()[:2]
    recorder = Recorder.for_config(gateway.store, config)   # the run is opened now; the keeper re-opens it
    recording = f"; recorded run {recorder.run_id} of experiment {config.experiment!r}" if recorder else ""
    if recorder:
        recorder.store.close()
    gateway.store.close()                # no database connection crosses a fork
    workers = f"; {config.workers} worker processes" if config.workers > 1 else ""
    print(f"costlab gateway on http://{host}:{port}  (openai: /openai/v1, anthropic: /anthropic, "
          f"google: /google; /metrics, /healthz); store {_shown(config.store)}{recording}{workers}", flush=True)
    keeper = _fork(lambda: _keep(config))
    try:
        if config.workers > 1:
            _supervise([_fork(lambda: _run(Gateway(config), sock)) for _ in range(config.workers)])
        else:
            _run(gateway, sock)
    finally:
        _stop_keeper(keeper)


def _run(gateway: Gateway, sock: socket.socket) -> None:
    """One serving process on `sock`; its commits leave SQLite's WAL checkpoints to the keeper."""
    gateway.store.hot.autocheckpoint = False
    # uvicorn re-raises the SIGTERM it shut down on; as SystemExit the caller's `finally` still runs
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit_on_signal)
    _server(gateway, gateway.config.host, sock.getsockname()[1]).run(sockets=[sock])


def _keep(config: GatewayConfig) -> None:
    """The keeper process: the recorder's thread (copies, checkpoints) or, recording nothing, the checkpoints alone.

    It stops on the SIGTERM `serve` sends once every serving process has settled its last call,
    or when `serve` itself is gone; Ctrl-C reaches the whole process group, so it is ignored here.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    parent = os.getppid()
    store = GatewayStore(config.store)
    recorder = Recorder.for_config(store, config)
    if recorder:
        recorder.start()
    try:
        while not stop.wait(POLL_S) and os.getppid() == parent:
            if recorder is None:
                store.hot.checkpoint()
    finally:
        if recorder:
            recorder.stop()
        store.close()


def _stop_keeper(pid: int) -> None:
    """Ask the keeper for its last flush and wait for it (it was started before any worker, so it ends last)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    with contextlib.suppress(ChildProcessError):
        while True:
            try:
                os.waitpid(pid, 0)
                return
            except InterruptedError:
                continue


def _fork(work) -> int:
    """A child process running `work()`; it exits 0 when work returns or stops on a signal, else 1."""
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        work()
        code = 0
    except SystemExit as exc:
        code = 0 if exc.code in (None, 0, 128 + signal.SIGTERM, 128 + signal.SIGINT) else 1
    except KeyboardInterrupt:
        code = 0
    except BaseException:     # noqa: BLE001 — the child's last words, then its exit code
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _supervise(children: list[int]) -> None:
    """Wait for the workers; SIGTERM or Ctrl-C stops them all, and so does one of them ending on its own."""
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    failed = False
    left = set(children)
    while left:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if pid not in left:      # the keeper, gone early: the rows wait in the store for the next start
            print(f"costlab gateway: the keeper process {pid} ended; the ledger is copied on the next start",
                  file=sys.stderr, flush=True)
            continue
        left.discard(pid)
        failed |= os.waitstatus_to_exitcode(status) != 0
        if not stopping:
            print(f"costlab gateway: worker {pid} ended; stopping the others", file=sys.stderr, flush=True)
            stop()
    if failed:
        raise SystemExit(1)


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
