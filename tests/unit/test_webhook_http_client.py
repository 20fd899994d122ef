"""The dispatcher's HTTP/1.1 client (webhooks.http_client) against scripted receivers.

Each receiver is a real asyncio server on 127.0.0.1 that reads one request at a
time and writes the raw answer the test scripts, so the cases the client must get
right (keep-alive, chunked bodies, a close while idle, HTTP/1.0, garbage, a slow
receiver, TLS with the URL's host name) are pinned byte for byte.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any

import pytest
import trustme

from webhooks.addresses import Target
from webhooks.http_client import BODY_LIMIT, BadResponse, HttpClient

pytestmark = pytest.mark.anyio
Answer = Callable[[int], bytes | None]  # request number -> raw answer (None: close)


class Scripted:
    """Counts connections and requests; answers request n with answer(n)."""

    def __init__(self, answer: Answer, tls: ssl.SSLContext | None = None) -> None:
        self.answer, self.tls = answer, tls
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> Scripted:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                self.requests.append(head + await reader.readexactly(length))
                answer = self.answer(len(self.requests))
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def target(port: int, scheme: str = "http", host: str = "127.0.0.1") -> Target:
    return Target(scheme, host, port, "127.0.0.1")


async def post(
    client: HttpClient, server: Scripted, scheme: str = "http", host: str = "127.0.0.1"
) -> int:
    return await client.post(
        target(server.port, scheme, host),
        f"{host}:{server.port}",
        "/hook?x=1",
        {"webhook-id": "o1"},
        b'{"a":1}',
    )


OK_204 = b"HTTP/1.1 204 No Content\r\n\r\n"
OK_LEN = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
OK_CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n"
)


@pytest.mark.parametrize(
    "answer, status",
    [
        (OK_204, 204),
        (OK_LEN, 200),
        (OK_CHUNKED, 200),
        (b"HTTP/1.1 100 Continue\r\n\r\n" + OK_204, 204),
        (b"HTTP/1.1 503 Busy\r\ncontent-length: 0\r\n\r\n", 503),
    ],
)
async def test_kept_alive_answers_reuse_one_connection(answer: bytes, status: int) -> None:
    async with Scripted(lambda n: answer) as server:
        client = HttpClient(2.0)
        assert [await post(client, server) for _ in range(3)] == [status] * 3
        assert server.connections == 1
        await client.aclose()


async def test_the_request_is_what_was_asked() -> None:
    async with Scripted(lambda n: OK_204) as server:
        client = HttpClient(2.0)
        await post(client, server, host="hooks.example")
        head, _, body = server.requests[0].partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        assert lines[0] == "POST /hook?x=1 HTTP/1.1"
        assert f"host: hooks.example:{server.port}" in lines
        assert "webhook-id: o1" in lines and "content-length: 7" in lines
        assert body == b'{"a":1}'
        await client.aclose()


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.0 200 OK\r\n\r\nbody until the close",
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (BODY_LIMIT + 1),
    ],
)
async def test_answers_that_end_the_connection_are_not_reused(answer: bytes) -> None:
    async with Scripted(lambda n: answer) as server:
        client = HttpClient(2.0)
        assert [await post(client, server) for _ in range(2)] == [200, 200]
        assert server.connections == 2
        await client.aclose()


async def test_a_connection_closed_while_idle_is_retried_on_a_fresh_one() -> None:
    # The second request reaches a connection the receiver closes without answering.
    async with Scripted(lambda n: None if n == 2 else OK_204) as server:
        client = HttpClient(2.0)
        assert await post(client, server) == 204
        assert await post(client, server) == 204
        assert server.connections == 2 and len(server.requests) == 3
        await client.aclose()


async def test_a_fresh_connection_closed_without_an_answer_is_an_error() -> None:
    async with Scripted(lambda n: None) as server:
        with pytest.raises(ConnectionError):
            await post(HttpClient(2.0), server)


@pytest.mark.parametrize(
    "answer",
    [
        b"SMTP ready\r\n\r\n",
        b"HTTP/1.1 abc\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
async def test_garbage_is_a_bad_response(answer: bytes) -> None:
    async with Scripted(lambda n: answer) as server:
        with pytest.raises(BadResponse):
            await post(HttpClient(2.0), server)


async def test_a_body_cut_short_is_a_bad_response() -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(cut, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    with pytest.raises(BadResponse):
        await HttpClient(2.0).post(target(port), "x", "/", {}, b"")
    server.close()


async def test_a_slow_receiver_times_out() -> None:
    async def never(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    server = await asyncio.start_server(never, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    with pytest.raises(TimeoutError):
        await HttpClient(0.2).post(target(port), "x", "/", {}, b"")
    server.close()


async def test_tls_checks_the_urls_host_name_not_the_address() -> None:
    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("hooks.example").configure_cert(server_tls)
    client_tls = ssl.create_default_context()
    ca.configure_trust(client_tls)
    async with Scripted(lambda n: OK_204, tls=server_tls) as server:
        client = HttpClient(2.0, tls=client_tls)
        assert await post(client, server, "https", "hooks.example") == 204
        with pytest.raises(ssl.SSLCertVerificationError):
            await post(client, server, "https", "other.example")
        await client.aclose()
