"""A plain-HTTP request on ``proxy.sock`` (absolute-form ``GET http://host/path``), forwarded once its network policy
allowed it: one request a connection, h11 on both sides, bodies streamed both ways, nothing added.

The request goes upstream in origin form with the client's end-to-end headers, ``Host`` set from the checked
target and ``Connection: close``; the answer comes back with its end-to-end headers and ``Connection: close``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from urllib.parse import urlsplit

import h11

from shared.egress.grant import HostPort
from shared.egress.network_record import HostUse

READ_SIZE = 64 * 1024
RESPONSE_TIMEOUT = 120.0
_HOP_BY_HOP = frozenset(
    {
        b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"proxy-connection", b"te",
        b"trailer", b"transfer-encoding", b"upgrade", b"host", b"expect",
    }
)  # fmt: skip


def _end_to_end(headers: list[tuple[bytes, bytes]], keep: frozenset[bytes] = frozenset()) -> list[tuple[bytes, bytes]]:
    """``headers`` without hop-by-hop ones (and those ``Connection`` names), except ``keep``."""
    named = {n.strip().lower() for name, value in headers if name.lower() == b"connection" for n in value.split(b",")}
    drop = (_HOP_BY_HOP | named) - keep
    return [(name, value) for name, value in headers if name.lower() not in drop]


def origin_form(target: bytes) -> bytes:
    parts = urlsplit(target.decode("ascii", "replace"))
    path = parts.path or "/"
    return (path + (f"?{parts.query}" if parts.query else "")).encode("ascii", "replace")


def host_header(target: HostPort) -> bytes:
    host = f"[{target.host}]" if ":" in target.host else target.host
    return (host if target.port == 80 else f"{host}:{target.port}").encode("ascii")


async def _next(conn: h11.Connection, reader: asyncio.StreamReader) -> object:
    while (event := conn.next_event()) is h11.NEED_DATA:
        conn.receive_data(await reader.read(READ_SIZE))
    return event


async def forward_plain(
    conn: h11.Connection,
    request: h11.Request,
    target: HostPort,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    upstream_reader: asyncio.StreamReader,
    upstream_writer: asyncio.StreamWriter,
    use: HostUse,
    touch: Callable[[], None] = lambda: None,
) -> None:
    """Send ``request`` (and its body) upstream, then stream the answer back; counts bytes on ``use``."""
    upstream = h11.Connection(h11.CLIENT)
    # h11 checked the client's framing and frames the body again upstream: a chunked upload stays chunked.
    kept = _end_to_end(list(request.headers), keep=frozenset({b"transfer-encoding"}))
    headers = [*kept, (b"host", host_header(target)), (b"connection", b"close")]
    upstream_writer.write(upstream.send(h11.Request(method=request.method, target=origin_form(request.target),
                                                    headers=headers)))  # fmt: skip
    if conn.they_are_waiting_for_100_continue:
        writer.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
    while True:
        event = await _next(conn, reader)
        touch()
        if isinstance(event, h11.Data):
            use.bytes_out += len(event.data)
            upstream_writer.write(upstream.send(h11.Data(data=event.data)))
            await upstream_writer.drain()
        elif isinstance(event, h11.EndOfMessage):
            upstream_writer.write(upstream.send(h11.EndOfMessage()))
            await upstream_writer.drain()
            break
        else:
            raise h11.RemoteProtocolError("request body ended early")
    while True:
        response = await asyncio.wait_for(_next(upstream, upstream_reader), RESPONSE_TIMEOUT)
        if not isinstance(response, h11.InformationalResponse):
            break
    if not isinstance(response, h11.Response):
        raise h11.RemoteProtocolError("upstream closed without an answer")
    headers = [*_end_to_end(list(response.headers)), (b"connection", b"close")]  # h11 frames it for the client
    writer.write(conn.send(h11.Response(status_code=response.status_code, headers=headers, reason=response.reason)))
    while True:
        event = await asyncio.wait_for(_next(upstream, upstream_reader), RESPONSE_TIMEOUT)
        touch()
        if isinstance(event, h11.Data):
            use.bytes_in += len(event.data)
            writer.write(conn.send(h11.Data(data=event.data)))
            await writer.drain()
        elif isinstance(event, h11.EndOfMessage):
            writer.write(conn.send(h11.EndOfMessage()))
            break
        else:
            raise h11.RemoteProtocolError("upstream answer ended early")
    with contextlib.suppress(ConnectionError):
        await writer.drain()
