"""The gateway's upstream transport against raw asyncio servers that write exact bytes, so the wire is the test's."""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import time
import warnings

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab.gateway import transport as transport_module
from lab.gateway.transport import PROXY_ENV, PooledTransport, send, upstream_transport

TIMEOUT = httpx.Timeout(5.0)
#: a slot that must come free at once: a request stuck behind a leaked connection fails in a second, not a minute
QUICK_POOL = httpx.Timeout(5.0, pool=1.0)
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


async def read_request(reader: asyncio.StreamReader) -> bytes | None:
    """One request off the wire, head and body exactly as sent; None once the client has hung up."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head + await reader.readexactly(length)


def keep_alive(answer):
    """A handler answering every request of a connection with `answer(request)` (or the bytes `answer`)."""
    async def handler(reader, writer):
        while (request := await read_request(reader)) is not None:
            writer.write(answer(request) if callable(answer) else answer)
            await writer.drain()
    return handler


class RawServer:
    """An HTTP server on 127.0.0.1, port 0, whose `handler(reader, writer)` writes the bytes; connections counted."""

    def __init__(self, handler):
        self.handler = handler
        self.accepts = self.open_now = self.open_max = 0
        self._handlers: set[asyncio.Task] = set()

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self._server.close()
        for task in self._handlers:                 # handlers still waiting on a client: ended with the server
            task.cancel()
        await asyncio.gather(*self._handlers)
        await self._server.wait_closed()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _serve(self, reader, writer) -> None:
        self.accepts += 1
        self.open_now += 1
        self.open_max = max(self.open_max, self.open_now)
        self._handlers.add(asyncio.current_task())
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.CancelledError):   # asyncio 3.11 logs a cancelled handler as an error
            pass
        finally:
            self._handlers.discard(asyncio.current_task())
            self.open_now -= 1
            writer.close()


async def never_answers(reader, writer) -> None:
    """A server handler that reads the request and then says nothing until the client hangs up."""
    await read_request(reader)
    await reader.read()


async def get(transport, url: str, timeout: httpx.Timeout = TIMEOUT) -> tuple[httpx.Response, bytes]:
    """A GET read to its end and closed: the answer and its body."""
    r = await send(transport, "GET", url, headers={}, timeout=timeout)
    try:
        return r, await r.aread()
    finally:
        await r.aclose()


async def until(predicate, timeout_s: float = 2.0) -> None:
    """Poll `predicate` until it holds (a server notices a hang-up a moment after the client made it)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.005)


# -- answers and their framing ----------------------------------------------------------------

def test_content_length_answer_gives_status_headers_and_exact_body():
    answer = (b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nSet-Cookie: a=1\r\n"
              b"Set-Cookie: b=2\r\nContent-Length: 11\r\n\r\n{\"x\": 1}\r\n\n")

    async def main():
        async with RawServer(keep_alive(answer)) as server:
            t = PooledTransport(4)
            r, body = await get(t, server.url())
            await t.aclose()
        assert r.status_code == 201
        assert body == b"{\"x\": 1}\r\n\n"
        assert r.headers["content-type"] == "application/json"
        assert r.headers.get_list("set-cookie") == ["a=1", "b=2"]
        assert r.http_version == "HTTP/1.1"
    asyncio.run(main())


def test_chunked_answer_with_extensions_and_trailers_gives_exact_body_and_keeps_the_connection():
    answer = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Seen: 1\r\nX-Seen: 2\r\n\r\n"
              b"5;ext=1\r\nhello\r\n"
              b"1;name=\"quoted value\"\r\n \r\n"
              b"B\r\nworld\r\n0123\r\n"
              b"0\r\nX-Trailer: t\r\nX-Other: u\r\n\r\n")

    async def main():
        async with RawServer(keep_alive(answer)) as server:
            t = PooledTransport(4)
            first, body = await get(t, server.url())
            _, again = await get(t, server.url())      # the trailers were consumed: the next answer parses
            await t.aclose()
        assert body == again == b"hello world\r\n0123"
        assert first.headers.get_list("x-seen") == ["1", "2"]
        assert server.accepts == 1
    asyncio.run(main())


def test_sequential_requests_reuse_one_keep_alive_connection():
    async def main():
        async with RawServer(keep_alive(lambda req: b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (
                len(req.split(b" ")[1]), req.split(b" ")[1]))) as server:
            t = PooledTransport(4)
            bodies = [(await get(t, server.url(f"/{i}")))[1] for i in range(10)]
            await t.aclose()
        assert bodies == [b"/%d" % i for i in range(10)]
        assert server.accepts == 1
    asyncio.run(main())


def test_connection_close_answers_are_not_reused():
    answer = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"

    async def main():
        async with RawServer(keep_alive(answer)) as server:
            t = PooledTransport(1)
            bodies = [(await get(t, server.url(), QUICK_POOL))[1] for _ in range(3)]
            await t.aclose()
        assert bodies == [b"ok"] * 3
        assert server.accepts == 3
    asyncio.run(main())


@pytest.mark.parametrize("version", [b"HTTP/1.0", b"HTTP/1.1"])
def test_answer_without_length_reads_to_eof_and_is_not_reused(version):
    async def handler(reader, writer):
        await read_request(reader)
        writer.write(version + b" 200 OK\r\nContent-Type: text/plain\r\n\r\nfirst part, ")
        await writer.drain()
        await asyncio.sleep(0.02)
        writer.write(b"second part")
        await writer.drain()               # the handler returns: the server closes, which ends the body

    async def main():
        async with RawServer(handler) as server:
            t = PooledTransport(1)
            _, body = await get(t, server.url(), QUICK_POOL)
            _, again = await get(t, server.url(), QUICK_POOL)
            await t.aclose()
        assert body == again == b"first part, second part"
        assert server.accepts == 2
    asyncio.run(main())


def test_expired_idle_connections_are_not_reused(monkeypatch):
    monkeypatch.setattr(transport_module, "KEEPALIVE_EXPIRY_S", 0.0)

    async def main():
        async with RawServer(keep_alive(OK)) as server:
            t = PooledTransport(1)
            for _ in range(3):
                await get(t, server.url(), QUICK_POOL)
            await until(lambda: server.open_now == 1)   # the expired ones were closed, not left open
            await t.aclose()
        assert server.accepts == 3
    asyncio.run(main())


# -- the pool's limit ------------------------------------------------------------------------

def test_fifty_concurrent_requests_share_four_connections():
    async def handler(reader, writer):
        while (request := await read_request(reader)) is not None:
            await asyncio.sleep(0.005)                # answers overlap, so the pool fills
            path = request.split(b" ")[1]
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(path), path))
            await writer.drain()

    async def main():
        async with RawServer(handler) as server:
            t = PooledTransport(4)
            answers = await asyncio.gather(*(get(t, server.url(f"/{i}")) for i in range(50)))
            await t.aclose()
        assert [body for _, body in answers] == [b"/%d" % i for i in range(50)]
        assert all(r.status_code == 200 for r, _ in answers)
        assert server.open_max == 4
        assert server.accepts == 4
    asyncio.run(main())


def test_pool_timeout_while_every_connection_stays_busy():
    async def main():
        async with RawServer(never_answers) as server:
            t = PooledTransport(1)
            busy = asyncio.create_task(get(t, server.url()))
            await until(lambda: server.accepts == 1)
            started = time.monotonic()
            with pytest.raises(httpx.PoolTimeout):
                await get(t, server.url(), httpx.Timeout(5.0, pool=0.05))
            waited_s = time.monotonic() - started
            busy.cancel()
            with pytest.raises(asyncio.CancelledError):
                await busy
            await t.aclose()
        assert 0.04 <= waited_s < 1.0
        assert server.accepts == 1
    asyncio.run(main())


def test_idle_connection_to_another_origin_makes_room():
    async def main():
        async with RawServer(keep_alive(OK)) as a, RawServer(keep_alive(OK)) as b:
            t = PooledTransport(1)
            await get(t, a.url())
            _, body = await get(t, b.url(), QUICK_POOL)     # a's idle connection is closed for it
            await until(lambda: a.open_now == 0)
            await t.aclose()
        assert body == b"ok"
    asyncio.run(main())


@pytest.mark.parametrize("pool_s", [None, 5.0])
def test_a_turn_given_to_a_cancelled_waiter_passes_to_the_next(pool_s):
    timeout = httpx.Timeout(5.0, pool=pool_s)

    async def handler(reader, writer):
        while (request := await read_request(reader)) is not None:
            if b"/slow" in request.split(b"\r\n")[0]:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf")   # then nothing more
            else:
                writer.write(OK)
            await writer.drain()

    async def main():
        async with RawServer(handler) as server:
            t = PooledTransport(1)
            slow = await send(t, "GET", server.url("/slow"), headers={}, timeout=timeout)
            first = asyncio.create_task(get(t, server.url(), timeout))
            second = asyncio.create_task(get(t, server.url(), timeout))
            await asyncio.sleep(0.02)                  # both wait for the one slot
            await slow.aclose()                        # the slot goes to `first` ...
            first.cancel()                             # ... which is cancelled before it runs
            with pytest.raises(asyncio.CancelledError):
                await first
            _, body = await asyncio.wait_for(second, 2.0)
            await t.aclose()
        assert body == b"ok"
    asyncio.run(main())


# -- connections the server ends -------------------------------------------------------------

def test_idle_connection_closed_by_the_server_is_replaced():
    async def one_answer_then_close(reader, writer):
        await read_request(reader)
        writer.write(OK)                              # keep-alive by its headers, closed all the same
        await writer.drain()

    async def main():
        async with RawServer(one_answer_then_close) as server:
            t = PooledTransport(1)
            await get(t, server.url())
            await until(lambda: server.open_now == 0)
            await asyncio.sleep(0.02)                 # the client has seen the end too
            r, body = await get(t, server.url(), QUICK_POOL)
            await t.aclose()
        assert (r.status_code, body) == (200, b"ok")
        assert server.accepts == 2
    asyncio.run(main())


def test_reused_connection_closed_as_the_request_arrives_is_retried_on_a_new_one():
    requests = []

    async def handler(reader, writer):
        first_connection = not requests
        requests.append(await read_request(reader))
        writer.write(OK)
        await writer.drain()
        requests.append(await read_request(reader))
        if first_connection:
            return                                     # closed with the second request unanswered
        writer.write(OK)
        await writer.drain()
        await read_request(reader)

    async def main():
        async with RawServer(handler) as server:
            t = PooledTransport(1)
            await get(t, server.url("/one"))
            r, body = await get(t, server.url("/two"), QUICK_POOL)
            await t.aclose()
        assert (r.status_code, body) == (200, b"ok")
        assert server.accepts == 2
        assert [req.split(b" ")[1] for req in requests if req] == [b"/one", b"/two", b"/two"]
    asyncio.run(main())


def test_a_new_connection_closed_without_an_answer_is_not_retried():
    async def hang_up(reader, writer):
        await read_request(reader)

    async def main():
        async with RawServer(hang_up) as server:
            t = PooledTransport(1)
            with pytest.raises(httpx.RemoteProtocolError, match="without answering"):
                await get(t, server.url())
            await t.aclose()
        assert server.accepts == 1
    asyncio.run(main())


@pytest.mark.parametrize("partial", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n10\r\nshort",
])
def test_server_closing_mid_body_raises_and_frees_the_connection(partial):
    answers = iter([partial])                         # the first connection's, then whole ones

    async def handler(reader, writer):
        while await read_request(reader) is not None:
            answer = next(answers, OK)
            writer.write(answer)
            await writer.drain()
            if answer is partial:
                return                                # closed mid-body

    async def main():
        async with RawServer(handler) as server:
            t = PooledTransport(1)
            r = await send(t, "GET", server.url(), headers={}, timeout=TIMEOUT)
            with pytest.raises(httpx.RemoteProtocolError, match="middle of its answer"):
                await r.aread()
            # no aclose: the failed read alone gives the slot back (the gateway's aread has no finally)
            _, body = await get(t, server.url(), QUICK_POOL)
            await t.aclose()
        assert body == b"ok"
        assert server.accepts == 2
    asyncio.run(main())


@pytest.mark.parametrize("head", [b"HTTP/1.1 2x0 OK\r\n\r\n", b"garbage\r\n\r\n", b"HTTP/1.1 200 OK\r\nBad header\r\n\r\n"])
def test_malformed_answer_is_a_remote_protocol_error(head):
    async def main():
        async with RawServer(keep_alive(head)) as server:
            t = PooledTransport(1)
            with pytest.raises(httpx.RemoteProtocolError, match="malformed"):
                await get(t, server.url())
            await t.aclose()
    asyncio.run(main())


def test_refused_connection_is_a_connect_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]              # closed again: nothing listens there

    async def main():
        t = PooledTransport(1)
        for _ in range(2):                     # the second: the failed dial gave its slot back
            with pytest.raises(httpx.ConnectError):
                await get(t, f"http://127.0.0.1:{port}/", QUICK_POOL)
        await t.aclose()
    asyncio.run(main())


def test_other_schemes_are_unsupported():
    async def main():
        with pytest.raises(httpx.UnsupportedProtocol):
            await get(PooledTransport(1), "ftp://127.0.0.1/file")
    asyncio.run(main())


# -- timeouts and cancellation ---------------------------------------------------------------

def test_server_that_never_answers_is_a_read_timeout_within_the_read_timeout():
    async def main():
        async with RawServer(never_answers) as server:
            t = PooledTransport(1)
            started = time.monotonic()
            with pytest.raises(httpx.ReadTimeout):
                await get(t, server.url(), httpx.Timeout(5.0, read=0.2, pool=1.0))
            elapsed_s = time.monotonic() - started
            await until(lambda: server.open_now == 0)          # the timed-out connection was closed
            await t.aclose()
        assert 0.19 <= elapsed_s < 1.0
    asyncio.run(main())


def test_body_that_stalls_is_a_read_timeout():
    async def stall(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await writer.drain()
        await reader.read()                       # silent until the client hangs up

    async def main():
        async with RawServer(stall) as server:
            t = PooledTransport(1)
            r = await send(t, "GET", server.url(), headers={}, timeout=httpx.Timeout(5.0, read=0.1, pool=1.0))
            with pytest.raises(httpx.ReadTimeout):
                await r.aread()
            await until(lambda: server.open_now == 0)
            await t.aclose()
    asyncio.run(main())


def test_cancelling_a_request_mid_wait_closes_cleanly(caplog):
    async def main():
        seen = asyncio.Event()

        async def handler(reader, writer):
            while (request := await read_request(reader)) is not None:
                if b"/hang" in request.split(b"\r\n")[0]:
                    seen.set()
                    await reader.read()                       # silent until the client hangs up
                writer.write(OK)
                await writer.drain()

        async with RawServer(handler) as server:
            t = PooledTransport(1)
            task = asyncio.create_task(get(t, server.url("/hang")))
            await seen.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await until(lambda: server.open_now == 0)          # its connection was closed
            answers = [await get(t, server.url(), QUICK_POOL) for _ in range(2)]
            await t.aclose()
        assert [body for _, body in answers] == [b"ok", b"ok"]
        assert server.accepts == 2

    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING, logger="asyncio"):
        warnings.simplefilter("always")
        asyncio.run(main(), debug=True)
        gc.collect()
    assert [str(w.message) for w in caught] == []
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio" and "took" not in r.getMessage()] == []


# -- the request as sent, and abandoned answers ----------------------------------------------

def test_request_leaves_as_one_piece_with_method_path_query_host_and_length():
    received = []
    body = bytes(range(256)) * 8

    async def handler(reader, writer):
        received.append(await reader.read(1 << 16))         # one read: the request was one write
        writer.write(OK)
        await writer.drain()

    async def main():
        async with RawServer(handler) as server:
            t = PooledTransport(1)
            r = await send(t, "POST", server.url("/v1/chat"), headers={"x-key": "value", "content-type": "a/b"},
                           content=body, params={"alt": "sse", "n": "2"}, timeout=TIMEOUT)
            await r.aread()
            await r.aclose()
            await t.aclose()
            return server.port
    port = asyncio.run(main())
    head, _, sent_body = received[0].partition(b"\r\n\r\n")
    request_line, *lines = head.split(b"\r\n")
    headers = dict(line.lower().split(b": ", 1) for line in lines)
    assert request_line == b"POST /v1/chat?alt=sse&n=2 HTTP/1.1"
    assert headers[b"host"] == b"127.0.0.1:%d" % port
    assert headers[b"content-length"] == b"%d" % len(body)
    assert headers[b"x-key"] == b"value" and headers[b"content-type"] == b"a/b"
    assert sent_body == body


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",               # all arrived, none read
    b"HTTP/1.1 200 OK\r\nContent-Length: 50000\r\n\r\n" + b"x" * 1000,   # still arriving
])
def test_closing_an_answer_before_reading_its_body_closes_its_connection(answer):
    answers = iter([answer])                          # the first request's, then whole ones

    async def handler(reader, writer):
        while await read_request(reader) is not None:
            writer.write(next(answers, OK))
            await writer.drain()

    async def main():
        async with RawServer(handler) as server:
            t = PooledTransport(1)
            r = await send(t, "GET", server.url(), headers={}, timeout=TIMEOUT)
            await asyncio.sleep(0.02)                 # whatever is coming has come
            await r.aclose()
            await until(lambda: server.open_now == 0)
            _, body = await get(t, server.url(), QUICK_POOL)
            await t.aclose()
        assert body == b"ok"
        assert server.accepts == 2
    asyncio.run(main())


# -- any body in any pieces ------------------------------------------------------------------

def _cut(data: bytes, sizes: list[int]) -> list[bytes]:
    """`data` in pieces of `sizes` (cycled), the last piece whatever is left."""
    pieces, at, k = [], 0, 0
    while at < len(data):
        size = sizes[k % len(sizes)] if sizes else len(data)
        pieces.append(data[at:at + size])
        at, k = at + size, k + 1
    return pieces


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.binary(max_size=20_000), chunked=st.booleans(),
       chunk_sizes=st.lists(st.integers(1, 5000), max_size=20),
       splits=st.lists(st.tuples(st.integers(1, 4000), st.booleans()), max_size=20))
def test_any_body_written_in_any_pieces_reads_back_exactly(body, chunked, chunk_sizes, splits):
    if chunked:
        encoded = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in _cut(body, chunk_sizes)) + b"0\r\n\r\n"
        wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + encoded
    else:
        wire = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    pieces = _cut(wire, [size for size, _ in splits])
    pauses = [pause for _, pause in splits] or [False]

    async def handler(reader, writer):
        await read_request(reader)
        for k, piece in enumerate(pieces):
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.001 if pauses[k % len(pauses)] else 0)
        await read_request(reader)                    # the next request, on the same connection
        writer.write(OK)
        await writer.drain()
        await read_request(reader)

    async def main():
        async with RawServer(handler) as server:
            t = PooledTransport(1)
            _, got = await get(t, server.url())
            _, after = await get(t, server.url())
            await t.aclose()
        return got, after, server.accepts
    got, after, accepts = asyncio.run(main())
    assert got == body
    assert (after, accepts) == (b"ok", 1)


# -- the choice of transport -----------------------------------------------------------------

def test_upstream_transport_is_httpx_own_behind_a_proxy(monkeypatch):
    for name in PROXY_ENV:
        monkeypatch.delenv(name, raising=False)
    assert isinstance(upstream_transport(8), PooledTransport)
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    chosen = upstream_transport(8)
    assert isinstance(chosen, httpx.AsyncHTTPTransport)
    assert not isinstance(chosen, PooledTransport)
