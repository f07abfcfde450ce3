"""The probes' HTTP client against real servers: framing, keep-alive, limits, errors, TLS."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from provider_servers import serve
from waiting import wait_until

from litellm_failover.providers import http
from litellm_failover.providers.errors import MalformedAnswer
from litellm_failover.providers.probe_client import (
    ConnectFailed,
    Disconnected,
    ProbeClient,
    TlsFailed,
)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[tuple[str, list[int]]]:
    """A TCP server answering with exactly the bytes a test writes; counts connections."""
    connections: list[int] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", connections
    finally:
        server.close()
        await server.wait_closed()


def answer_each_request(response: bytes, *, close_after: bool = False) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(response)
            await writer.drain()
            if close_after:
                return

    return handler


async def test_keep_alive_reuses_one_connection_and_sends_host_and_headers():
    seen: list[tuple[str, str | None, int]] = []

    async def echo(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        seen.append((request.headers["Host"], request.headers.get("Authorization"), peer[1] if peer else 0))
        return web.Response(text="ok")

    async with serve({"/x": echo}) as srv, ProbeClient() as client:
        for _ in range(5):
            answer = await client.get(
                f"{srv.url}/x?a=1", headers={"Authorization": "Bearer k"}, max_body_bytes=10
            )
            assert (answer.status, answer.body) == (200, b"ok")
    hosts = {host for host, _, _ in seen}
    assert hosts == {srv.url.removeprefix("http://")}
    assert {auth for _, auth, _ in seen} == {"Bearer k"}
    assert len({port for _, _, port in seen}) == 1  # one client port: one connection for all five


@pytest.mark.parametrize(
    ("response", "body"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", b"hello"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2;x=y\r\nlo\r\n0\r\n\r\n",
            b"hello",
        ),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n", b"hello"),
        (b"HTTP/1.1 204 No Content\r\n\r\n", b""),
    ],
)
async def test_body_framings_keep_the_connection(response, body):
    async with raw_server(answer_each_request(response)) as (url, connections), ProbeClient() as client:
        for _ in range(3):
            answer = await client.get(f"{url}/h", max_body_bytes=100)
            assert answer.body == body
    assert len(connections) == 1


async def test_body_until_close_is_read_and_the_connection_is_not_reused():
    response = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it"
    async with raw_server(answer_each_request(response, close_after=True)) as (url, connections):
        async with ProbeClient() as client:
            for _ in range(2):
                assert (await client.get(f"{url}/h", max_body_bytes=100)).body == b"all of it"
    assert len(connections) == 2


def answer_in_turn(*responses: bytes) -> Handler:
    """Answer the n-th request (counted over all connections) with ``responses[n]``."""
    served = [0]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(responses[min(served[0], len(responses) - 1)])
            served[0] += 1
            await writer.drain()

    return handler


OLD_200 = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
NOW_503 = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\ndown"


async def test_bytes_after_the_declared_length_are_never_read_as_the_next_answer():
    # The first answer declares 2 bytes and then sends a whole second (stale) 200 right behind
    # them, in the same write. The server is down by the next probe: that probe must see the 503.
    async with raw_server(answer_in_turn(OLD_200 + OLD_200, NOW_503)) as (url, connections):
        async with ProbeClient() as client:
            first = await client.get(f"{url}/h", max_body_bytes=100)
            second = await client.get(f"{url}/h", max_body_bytes=100)
    assert (first.status, first.body) == (200, b"ok")
    assert (second.status, second.body) == (503, b"down")
    assert len(connections) == 2


async def test_bytes_that_arrive_while_idle_make_the_connection_unusable():
    # The extra bytes come after the answer was read, while the connection sits idle: they are
    # in the socket or the reader's buffer when the next probe takes the connection.
    async def late_extra(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(OLD_200)
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(OLD_200)
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")  # never reached by a correct client
        writer.write(OLD_200)
        await writer.drain()

    fresh = answer_in_turn(NOW_503)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await (late_extra if not handler.first_done else fresh)(reader, writer)  # type: ignore[attr-defined]

    handler.first_done = False  # type: ignore[attr-defined]
    async with raw_server(handler) as (url, connections), ProbeClient() as client:
        assert (await client.get(f"{url}/h", max_body_bytes=100)).status == 200
        handler.first_done = True  # type: ignore[attr-defined]
        await asyncio.sleep(0.2)  # the late bytes reach the socket (and maybe the reader)
        assert (await client.get(f"{url}/h", max_body_bytes=100)).status == 503
    assert len(connections) == 2


async def test_bytes_still_in_the_socket_make_the_connection_unusable():
    # The event loop has not read the extra bytes yet (reading is paused here to make that
    # certain): only the peek at the socket can see them.
    sent_extra = asyncio.Event()

    async def extra_on_cue(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(OLD_200)
        await writer.drain()
        await sent_extra.wait()
        writer.write(OLD_200)
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")
        writer.write(OLD_200)
        await writer.drain()

    cue = [extra_on_cue]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await (cue.pop(0) if cue else answer_in_turn(NOW_503))(reader, writer)

    async with raw_server(handler) as (url, connections), ProbeClient() as client:
        assert (await client.get(f"{url}/h", max_body_bytes=100)).status == 200
        [idle] = [c for pool in client._idle.values() for c in pool.connections]
        idle.writer.transport.pause_reading()
        sent_extra.set()
        await asyncio.sleep(0.2)
        assert not idle.has_buffered_bytes()
        async with asyncio.timeout(5):  # reusing it would wait forever on the paused reader
            assert (await client.get(f"{url}/h", max_body_bytes=100)).status == 503
    assert len(connections) == 2


@pytest.mark.parametrize(
    "size_line",
    [
        b"0x10",
        b"-1",
        b"+5",
        b" 5",
        b"5 ",
        b"\t5",
        b"5\t",
        b"5_0",
        b"",
        b"5;",
        b"5 ;a b",
        b"1" * 17,
        b"\xd9\xa5",
    ],
)
async def test_chunk_sizes_are_parsed_strictly(size_line):
    response = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + size_line
        + b"\r\nhello\r\n0\r\n\r\n"  # a lenient parser reads "+5" or " 5" as 5 and succeeds
    )
    async with (
        raw_server(answer_each_request(response, close_after=True)) as (url, _),
        ProbeClient() as client,
    ):
        with pytest.raises(Exception) as err:
            await http.get(client, f"{url}/h", max_body_bytes=10**30)
    assert http.describe_error(err.value).startswith("bad HTTP answer: bad chunk size")


@pytest.mark.parametrize(
    "size_line",
    [b"5", b"05", b"5;name", b"5 ; name = value", b'5;a="q\\"uoted";b=2', b"5\t;x"],
)
async def test_chunk_extensions_of_rfc_9112_are_accepted(size_line):
    response = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + size_line + b"\r\nhello\r\n0\r\n\r\n"
    )
    async with raw_server(answer_each_request(response)) as (url, connections), ProbeClient() as client:
        for _ in range(2):
            assert (await client.get(f"{url}/h", max_body_bytes=100)).body == b"hello"
    assert len(connections) == 1


@pytest.mark.parametrize(
    "framing",
    [
        b"0\r\n" + b"X-T: 12345678\r\n" * 6000 + b"\r\n",  # endless trailers
        b"1;e=" + b"v" * 60_000 + b"\r\nx\r\n1;e=" + b"v" * 60_000 + b"\r\nx\r\n0\r\n\r\n",  # fat extensions
    ],
)
async def test_chunk_framing_overhead_is_bounded(framing):
    response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + framing
    async with (
        raw_server(answer_each_request(response, close_after=True)) as (url, _),
        ProbeClient() as client,
    ):
        with pytest.raises(Exception) as err:
            await http.get(client, f"{url}/h", max_body_bytes=100)
    assert http.describe_error(err.value).startswith("bad HTTP answer: chunk framing over 65536 bytes")


@pytest.mark.parametrize(
    ("head", "reason"),
    [
        (b"Content-Length: 2\r\nContent-Length: 3", "bad HTTP answer: conflicting Content-Length"),
        (b"Content-Length: 2, 2", "bad HTTP answer: bad Content-Length '2, 2'"),
        (b"Content-Length: +2", "bad HTTP answer: bad Content-Length '+2'"),
        (b"Content-Length: \xb2", "bad HTTP answer: bad Content-Length"),
        (b"Content-Length: " + b"9" * 30, "bad HTTP answer: bad Content-Length"),
        (b"Content-Length : 2", "bad HTTP answer: malformed header line"),
        (b"X: a\r\n folded", "bad HTTP answer: malformed header line"),
        (b"Transfer-Encoding: gzip", "bad HTTP answer: unsupported Transfer-Encoding 'gzip'"),
        (b"Transfer-Encoding: xchunked", "bad HTTP answer: unsupported Transfer-Encoding 'xchunked'"),
    ],
)
async def test_framing_headers_in_doubt_are_errors(head, reason):
    response = b"HTTP/1.1 200 OK\r\n" + head + b"\r\n\r\nokok"
    async with (
        raw_server(answer_each_request(response, close_after=True)) as (url, _),
        ProbeClient() as client,
    ):
        with pytest.raises(Exception) as err:
            await http.get(client, f"{url}/h", max_body_bytes=100)
    assert http.describe_error(err.value).startswith(reason)


async def test_chunked_with_a_content_length_too_is_read_chunked_and_not_reused():
    # RFC 9112 6.3: Transfer-Encoding wins, and such a message may be a smuggling attempt, so
    # the connection is closed after it.
    response = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    )
    async with raw_server(answer_each_request(response)) as (url, connections), ProbeClient() as client:
        for _ in range(2):
            assert (await client.get(f"{url}/h", max_body_bytes=100)).body == b"hello"
    assert len(connections) == 2


@pytest.mark.parametrize(
    "response",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1f4\r\n" + b"x" * 500 + b"\r\n0\r\n\r\n",
        b"HTTP/1.0 200 OK\r\n\r\n" + b"x" * 500,
    ],
)
async def test_bodies_over_the_limit_fail_with_the_url(response):
    async with (
        raw_server(answer_each_request(response, close_after=True)) as (url, _),
        ProbeClient() as client,
    ):
        with pytest.raises(MalformedAnswer, match=f"^{url}/m: body over 100 bytes$"):
            await http.get(client, f"{url}/m?secret=1", max_body_bytes=100)


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "bad HTTP answer: not an HTTP/1.x answer: 'SSH-2.0-OpenSSH_9.2'"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: x1\r\n\r\n", "bad HTTP answer: bad Content-Length 'x1'"),
        (
            b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
            "bad HTTP answer: malformed header line 'no colon here'",
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "bad HTTP answer: bad chunk size b'zz'",
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "answer cut short"),
        (b"HTTP/1.1 200 O", "answer cut short"),
        (
            b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70_000 + b"\r\n\r\n",
            "bad HTTP answer: status line and headers over",
        ),
    ],
)
async def test_broken_answers_become_reasons(response, reason):
    async with (
        raw_server(answer_each_request(response, close_after=True)) as (url, _),
        ProbeClient() as client,
    ):
        with pytest.raises(Exception) as err:
            await http.get(client, f"{url}/h", max_body_bytes=1000)
    assert http.describe_error(err.value).startswith(reason)


async def test_a_connection_the_server_closed_while_idle_is_replaced():
    """uvicorn closes idle keep-alive connections after 5 s; the next probe must not fail for it."""
    closers: list[asyncio.StreamWriter] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        closers.append(writer)
        while True:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    async with raw_server(handler) as (url, connections), ProbeClient() as client:
        assert (await client.get(f"{url}/h", max_body_bytes=10)).body == b"ok"
        closers[0].close()  # the server drops the idle connection
        await wait_until(lambda: closers[0].is_closing(), 2, "server-side close")
        assert (await client.get(f"{url}/h", max_body_bytes=10)).body == b"ok"
    assert len(connections) == 2


async def test_a_stale_connection_noticed_only_on_write_is_retried_once():
    """The race uvicorn's idle timeout makes: the close arrives after we picked the connection."""
    served = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        await reader.readuntil(b"\r\n\r\n")
        served += 1
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        if served == 1:
            await reader.readuntil(b"\r\n\r\n")  # read the second request, then hang up unanswered
            return
        while True:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    async with raw_server(handler) as (url, connections), ProbeClient() as client:
        assert (await client.get(f"{url}/h", max_body_bytes=10)).body == b"ok"
        assert (await client.get(f"{url}/h", max_body_bytes=10)).body == b"ok"
    assert len(connections) == 2


async def test_a_fresh_connection_that_closes_unanswered_is_an_error_not_a_retry_loop():
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")

    async with raw_server(handler) as (url, connections), ProbeClient() as client:
        with pytest.raises(Disconnected) as err:
            await client.get(f"{url}/h", max_body_bytes=10)
    assert http.describe_error(err.value) == "server closed the connection without answering"
    assert len(connections) == 1


async def test_a_cancelled_read_never_leaves_a_half_read_connection_for_the_next_probe():
    stall = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = not stall.is_set()
        stall.set()
        while True:
            await reader.readuntil(b"\r\n\r\n")
            if first:  # half a body, then silence: the rest would be mistaken for the next answer
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nstale")
                await writer.drain()
                await asyncio.Event().wait()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfresh")
            await writer.drain()

    async with raw_server(handler) as (url, connections), ProbeClient() as client:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await client.get(f"{url}/h", max_body_bytes=10)
        assert (await client.get(f"{url}/h", max_body_bytes=10)).body == b"fresh"
    assert len(connections) == 2


async def test_refused_connection_and_header_injection():
    async with raw_server(answer_each_request(b"")) as (url, _):
        pass  # closed: nothing listens on this port now
    async with ProbeClient() as client:
        with pytest.raises(ConnectFailed) as err:
            await client.get(f"{url}/h", max_body_bytes=10)
        assert http.describe_error(err.value) == f"connection refused ({url.removeprefix('http://')})"
        with pytest.raises(MalformedAnswer, match="line break"):
            await client.get(f"{url}/h", headers={"X": "a\r\nEvil: 1"}, max_body_bytes=10)


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_https_verifies_certificates(self_signed):
    cert, key = self_signed
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    peers: set[int] = set()

    async def fine(request: web.Request) -> web.Response:
        peers.add(request.transport.get_extra_info("peername")[1] if request.transport else 0)
        return web.Response(text="fine")

    app = web.Application()
    app.router.add_get("/health", fine)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"https://127.0.0.1:{port}/health"
    try:
        async with ProbeClient() as client:  # the system CA store does not know this certificate
            with pytest.raises(TlsFailed) as err:
                await client.get(url, max_body_bytes=100)
            assert http.describe_error(err.value).startswith("TLS error talking to 127.0.0.1")
        trusting = ssl.create_default_context(cafile=str(cert))
        async with ProbeClient(ssl_context=trusting) as client:
            for _ in range(3):
                assert (await client.get(url, max_body_bytes=100)).body == b"fine"
                await asyncio.sleep(0.1)  # anything the server sends after the answer arrives
        # Kept alive over TLS too: the idle peek sees records, and a plain answer leaves none.
        assert len(peers) == 1
    finally:
        await runner.cleanup()


async def test_https_to_a_plain_http_server_is_a_tls_error():
    async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)  # the TLS ClientHello arrives; a plain server answers in HTTP
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    async with raw_server(plain) as (url, _), ProbeClient() as client:
        with pytest.raises(TlsFailed) as err:
            await client.get(url.replace("http://", "https://") + "/h", max_body_bytes=10)
    assert http.describe_error(err.value).startswith("TLS error talking to 127.0.0.1")
