"""The gateway's upstream transport for httpx: HTTP/1.1 keep-alive connections on asyncio, parsed by httptools.

httpx stays the client (its requests, responses, timeouts and errors); only the layer under it
changes. httpx's default transport (httpcore) costs about 1 ms of CPU per call on a 2-core
machine, and its pool rescans every connection for every idle one on each request, so after a
burst has opened a few hundred connections each call costs milliseconds more: that alone held
one gateway process under 200 requests/s. Here each origin keeps its idle connections in a
last-in-first-out list, a request leaves in one write, and the answer is parsed by httptools'
C parser (uvicorn's), which also undoes chunked transfer encoding. HTTP/2 and proxies are not
spoken: `upstream_transport` is httpx's own transport when the environment names a proxy.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from collections import deque

import httptools
import httpx

#: idle connections kept per origin; more are closed as they come back
MAX_IDLE_PER_ORIGIN = 256
#: an idle connection older than this is closed, not reused (the servers' keep-alive is about 5 s or more)
KEEPALIVE_EXPIRY_S = 4.0
#: a body buffered beyond this stops reading the socket until the caller catches up
HIGH_WATER_BYTES = 1 << 20
_URLS: dict[str, httpx.URL] = {}
PROXY_ENV = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy")


def upstream_transport(max_connections: int) -> httpx.AsyncBaseTransport:
    """The transport for the upstream calls: this one, or httpx's own through the proxy the environment names."""
    proxy = next((os.environ[name] for name in PROXY_ENV if os.environ.get(name)), None)
    if proxy:
        return httpx.AsyncHTTPTransport(proxy=proxy, limits=httpx.Limits(max_connections=max_connections,
                                                                         max_keepalive_connections=64))
    return PooledTransport(max_connections)


async def send(transport: httpx.AsyncBaseTransport, method: str, url: str, *, headers: dict, content: bytes = b"",
               timeout: httpx.Timeout, params: dict | None = None) -> httpx.Response:
    """One request on `transport`, its answer's body not yet read (`aread`, `aiter_raw`, then `aclose`).

    No httpx client in between: a client's cookie jar would carry one learner's upstream cookies
    into the next learner's calls, and its auth, redirect and cookie layers cost a quarter of a call.
    """
    parsed = _URLS.get(url)
    if parsed is None:
        if len(_URLS) >= 1024:
            _URLS.clear()
        parsed = _URLS[url] = httpx.URL(url)      # the same few upstream URLs on every call
    request = httpx.Request(method, parsed, headers=headers, content=content, params=params or None,
                            extensions={"timeout": timeout.as_dict()})
    response = await transport.handle_async_request(request)
    response.request = request
    return response


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection: httptools feeds the answer's head and body into it as bytes arrive."""

    def __init__(self, origin: tuple):
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.parser: httptools.HttpResponseParser | None = None
        self.waiter: asyncio.Future | None = None
        self.closed = False
        self.idle_since = 0.0
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = self.complete = self.keep_alive = False
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.received = False            # any byte of the answer seen
        self.error: Exception | None = None

    # -- asyncio ------------------------------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.parser is None:          # bytes nobody asked for (on an idle connection): drop the connection
            self.closed = True
            self.transport.close()
            return
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(httpx.RemoteProtocolError("the upstream switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"the upstream sent malformed HTTP ({exc})"))

    def connection_lost(self, exc) -> None:
        self.closed = True
        if self.parser is not None and not self.complete and self.error is None:
            if self.head_done and not self._framed():
                self.complete = True     # a body delimited by the connection's end
            else:
                what = "in the middle of its answer" if self.received else "without answering"
                self.error = httpx.RemoteProtocolError(f"the upstream closed the connection {what}")
        self._wake()

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        pass

    # -- httptools callbacks -----------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()   # asked now: after the body the parser has reset
        self.head_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER_BYTES:
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self.complete = True
        self._wake()

    # -- for the transport -------------------------------------------------------------------

    def _framed(self) -> bool:
        return any(k.lower() in (b"content-length", b"transfer-encoding") for k, _ in self.headers)

    def _fail(self, error: Exception) -> None:
        self.error = error
        self.close()
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def wait(self, timeout_s: float | None) -> None:
        """Until the parser has more to say (or the connection ends); httpx.ReadTimeout after `timeout_s` of quiet."""
        loop = asyncio.get_running_loop()
        self.waiter = loop.create_future()
        handle = loop.call_later(timeout_s, self.waiter.cancel) if timeout_s is not None else None
        try:
            await self.waiter
        except asyncio.CancelledError:
            if handle is not None and self.waiter.cancelled() and not _task_cancelling():
                self.close()
                raise httpx.ReadTimeout(f"the upstream sent nothing for {timeout_s:g} s") from None
            self.close()
            raise
        finally:
            if handle is not None:
                handle.cancel()
            self.waiter = None

    def take(self) -> bytes:
        data = b"".join(self.chunks)
        self.chunks.clear()
        if self.buffered > HIGH_WATER_BYTES and not self.closed:
            self.transport.resume_reading()
        self.buffered = 0
        return data

    def reusable(self) -> bool:
        """Whole, kept alive and fully read: body bytes left unread (an answer closed early) end the connection."""
        return self.complete and self.keep_alive and self.error is None and not self.closed and not self.chunks

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def _task_cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class _Body(httpx.AsyncByteStream):
    """An answer's body as it arrives; the connection goes back to the pool once the body is whole."""

    def __init__(self, pool: PooledTransport, conn: _Connection, read_timeout_s: float | None):
        self.pool, self.conn, self.read_timeout_s = pool, conn, read_timeout_s
        self.done = False

    async def __aiter__(self):
        conn = self.conn
        try:
            while True:
                if conn.chunks:
                    yield conn.take()
                elif conn.error is not None:
                    raise conn.error
                elif conn.complete:
                    break
                else:
                    await conn.wait(self.read_timeout_s)
        finally:                         # a failed read frees its slot too: httpx closes no response on errors
            await self.aclose()

    async def aclose(self) -> None:
        if not self.done:
            self.done = True
            self.pool._give_back(self.conn)


class PooledTransport(httpx.AsyncBaseTransport):
    """Keep-alive HTTP/1.1 to each origin, at most `max_connections` open at once (others wait their turn)."""

    def __init__(self, max_connections: int = 1000, ssl_context: ssl.SSLContext | None = None):
        self.max_connections = max_connections
        self._ssl = ssl_context
        self._idle: dict[tuple, list[_Connection]] = {}
        self._open = 0
        self._turns: deque[asyncio.Future] = deque()
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        origin = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        if origin[0] not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"no {origin[0]}:// upstreams (http and https only)")
        timeouts = request.extensions.get("timeout") or {}
        body = await request.aread()
        head = [b"%s %s HTTP/1.1\r\n" % (request.method.encode(), url.raw_path)]
        for name, value in request.headers.raw:
            head += (name, b": ", value, b"\r\n")
        head.append(b"\r\n")
        message = b"".join(head) + body
        for tries_left in (1, 0):
            conn, reused = await self._connection(origin, timeouts)
            conn._reset()
            conn.parser = httptools.HttpResponseParser(conn)
            conn.transport.write(message)
            try:
                while not conn.head_done:
                    if conn.error is not None:
                        raise conn.error
                    if conn.complete:   # an answer with no head cannot happen; treat as a protocol error
                        raise httpx.RemoteProtocolError("the upstream ended its answer before its head")
                    await conn.wait(timeouts.get("read"))
            except httpx.RemoteProtocolError:
                self._give_back(conn)
                # a kept-alive connection the server closed just as we used it: once more, on a new one
                if reused and tries_left and not conn.received:
                    continue
                raise
            except BaseException:
                self._give_back(conn)
                raise
            return httpx.Response(conn.status, headers=conn.headers, stream=_Body(self, conn, timeouts.get("read")),
                                  extensions={"http_version": b"HTTP/1.1"})
        raise AssertionError("unreachable")

    async def _connection(self, origin: tuple, timeouts: dict) -> tuple[_Connection, bool]:
        while True:
            conn = self._take_idle(origin)
            if conn is not None:
                return conn, True
            if self._open < self.max_connections or self._drop_idle():
                break
            await self._wait_turn(timeouts.get("pool"))
        self._open += 1
        try:
            return await self._dial(origin, timeouts.get("connect")), False
        except BaseException:
            self._open -= 1
            self._next_turn()
            raise

    def _take_idle(self, origin: tuple) -> _Connection | None:
        """The origin's most recent idle connection still open and not expired (the others are closed)."""
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < KEEPALIVE_EXPIRY_S:
                return conn
            self._forget(conn)
        return None

    def _drop_idle(self) -> bool:
        """Close an idle connection to another origin (the caller's own came first), its slot taken by the caller.

        Idle connections count as open: without this, a full pool of another origin's idle ones would
        keep a request waiting until PoolTimeout.
        """
        for idle in self._idle.values():
            if idle:
                idle.pop(0).close()
                self._open -= 1
                return True
        return False

    async def _wait_turn(self, timeout_s: float | None) -> None:
        """Until a connection closes or comes back idle; httpx.PoolTimeout after `timeout_s`."""
        turn = asyncio.get_running_loop().create_future()
        self._turns.append(turn)
        try:
            async with asyncio.timeout(timeout_s):    # not wait_for: in 3.11 it swallows a cancel once the turn came
                await turn
        except BaseException as exc:
            if turn.done() and not turn.cancelled():
                self._next_turn()                     # given, then cancelled or timed out before it ran: pass it on
            if isinstance(exc, TimeoutError):
                raise httpx.PoolTimeout(f"all {self.max_connections} upstream connections stayed busy") from None
            raise

    async def _dial(self, origin: tuple, timeout_s: float | None) -> _Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        context = None
        if scheme == "https":
            context = self._ssl = self._ssl or httpx.create_ssl_context()
        try:
            _, conn = await asyncio.wait_for(loop.create_connection(
                lambda: _Connection(origin), host, port, ssl=context,
                server_hostname=host if context else None), timeout_s)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"could not connect to {host}:{port} within {timeout_s:g} s") from None
        except OSError as exc:
            raise httpx.ConnectError(f"could not connect to {host}:{port} ({exc.strerror or exc})") from None
        return conn

    def _give_back(self, conn: _Connection) -> None:
        """A connection whose answer is read (or abandoned): idle again if whole and kept alive, else closed."""
        conn.parser = None if not conn.reusable() else conn.parser
        if conn.parser is not None and not self._closed:
            conn.parser = None
            idle = self._idle.setdefault(conn.origin, [])
            if len(idle) < MAX_IDLE_PER_ORIGIN:
                conn.idle_since = time.monotonic()
                idle.append(conn)
                self._next_turn()
                return
        conn.close()
        self._forget(conn)

    def _forget(self, conn: _Connection) -> None:
        conn.close()
        self._open -= 1
        self._next_turn()

    def _next_turn(self) -> None:
        while self._turns:
            turn = self._turns.popleft()
            if not turn.done():
                turn.set_result(None)
                return

    async def aclose(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()

