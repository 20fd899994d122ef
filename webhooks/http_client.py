"""A small HTTP/1.1 client for webhook POSTs: keep-alive connections to checked addresses.

Why not httpx: measured in `bench.bench_webhooks`, httpx (through httpcore and
anyio) took most of the dispatcher's CPU, and its pool walks every queued request
and every connection on each request (`_assign_requests_to_connections`), so the
cost per delivery grew with the deliveries in flight: 1 replica topped out near
400 deliveries/s. A webhook POST needs little: connect to one address (already
checked, webhooks.addresses), send one request, read the status and skip the body.

- Connections are kept per (scheme, address, port, TLS name) and reused LIFO; how
  many are open at once is bounded by the caller's per-endpoint limit.
- A reused connection the receiver closed while idle is retried once on a fresh
  one (the request never reached it; receivers drop repeats by `webhook-id` anyway).
- Response bodies are read and dropped up to `BODY_LIMIT`; past it, or without a
  length, the connection is closed rather than kept.
- TLS: the system's trust store, the URL's host as SNI and for the certificate check.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field

from webhooks.addresses import Target

BODY_LIMIT = 64 * 1024
HEAD_LIMIT = 64 * 1024
IDLE_PER_TARGET = 64


class BadResponse(Exception):
    """The receiver's answer is not HTTP/1.x."""


class _Stale(Exception):
    """A kept-alive connection was closed by the receiver before answering."""


@dataclass
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def usable(self) -> bool:
        return not (self.reader.at_eof() or self.writer.is_closing())

    def close(self) -> None:
        self.writer.close()


@dataclass
class HttpClient:
    timeout_s: float
    tls: ssl.SSLContext | None = None  # None: the system's trust store, made when first used
    _idle: dict[tuple[str, str, int, str], list[_Conn]] = field(default_factory=dict)

    async def post(
        self, target: Target, host_header: str, path: str, headers: dict[str, str], body: bytes
    ) -> int:
        """The response's status code; raises TimeoutError, OSError or BadResponse."""
        head = [f"POST {path} HTTP/1.1", f"host: {host_header}", f"content-length: {len(body)}"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        request = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        key = (target.scheme, target.address, target.port, target.host)
        async with asyncio.timeout(self.timeout_s):
            conn = self._take(key)
            if conn is not None:
                try:
                    return await self._exchange(key, conn, request)
                except _Stale:
                    pass
            conn = await self._open(target)
            try:
                return await self._exchange(key, conn, request)
            except _Stale as exc:
                raise ConnectionResetError("the receiver closed the connection") from exc

    async def aclose(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()

    def _take(self, key: tuple[str, str, int, str]) -> _Conn | None:
        conns = self._idle.get(key)
        while conns:
            conn = conns.pop()
            if conn.usable():
                return conn
            conn.close()
        return None

    async def _open(self, target: Target) -> _Conn:
        if target.scheme == "https":
            if self.tls is None:
                self.tls = ssl.create_default_context()
            reader, writer = await asyncio.open_connection(
                target.address,
                target.port,
                ssl=self.tls,
                server_hostname=target.host,
                limit=HEAD_LIMIT,
            )
        else:
            reader, writer = await asyncio.open_connection(
                target.address, target.port, limit=HEAD_LIMIT
            )
        return _Conn(reader, writer)

    async def _exchange(self, key: tuple[str, str, int, str], conn: _Conn, request: bytes) -> int:
        keep = False
        try:
            conn.writer.write(request)
            await conn.writer.drain()
            status, keep = await _read_response(conn.reader)
            return status
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                raise _Stale from exc
            raise BadResponse("the response ended early") from exc
        except (ConnectionResetError, BrokenPipeError) as exc:
            raise _Stale from exc
        except asyncio.LimitOverrunError as exc:
            raise BadResponse("the response's head is too long") from exc
        finally:
            if keep:
                idle = self._idle.setdefault(key, [])
                if len(idle) < IDLE_PER_TARGET:
                    idle.append(conn)
                else:
                    conn.close()
            else:
                conn.close()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """(status, whether the connection may be reused), the body read and dropped."""
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        status, version, fields = _parse_head(head)
        if status >= 200 or status == 101:
            break  # 1xx informational answers precede the real one
    keep = version == "HTTP/1.1" and "close" not in fields.get("connection", "").lower()
    if status in (204, 304) or status < 200:
        return status, keep
    if "chunked" in fields.get("transfer-encoding", "").lower():
        return status, keep and await _skip_chunked(reader)
    length = fields.get("content-length")
    if length is None:
        return status, False  # delimited by the close: not worth reading
    try:
        size = int(length)
    except ValueError as exc:
        raise BadResponse("invalid content-length") from exc
    if size > BODY_LIMIT:
        return status, False
    await reader.readexactly(size)
    return status, keep


async def _skip_chunked(reader: asyncio.StreamReader) -> bool:
    """Reads a chunked body; False (close the connection) if it is too long."""
    total = 0
    while True:
        line = await reader.readuntil(b"\r\n")
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError as exc:
            raise BadResponse("invalid chunk size") from exc
        total += size
        if total > BODY_LIMIT:
            return False
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass  # trailers
            return True
        await reader.readexactly(size + 2)


def _parse_head(head: bytes) -> tuple[int, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise BadResponse(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    fields: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            fields[name.strip().lower()] = value.strip()
    return int(parts[1]), parts[0], fields
