"""``proxy.sock``: a forward proxy that only opens ``CONNECT`` tunnels to the grant's allowlisted host:port.

h11 parses the request. Nothing is added to a tunnel (no credential; TLS stays end to end between the client and
the host). Every refusal is answered ``403`` and reported to the wiring's ``on_blocked`` with the target and reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from urllib.parse import urlsplit

import h11

from shared.egress.address_policy import Refused
from shared.egress.grant import HostPort

logger = logging.getLogger(__name__)

READ_SIZE = 64 * 1024
MAX_HEAD = 16 * 1024
HEAD_TIMEOUT = 30.0
NOT_ALLOWED = "is not on the allowlist"


async def _next_event(conn: h11.Connection, reader: asyncio.StreamReader) -> object:
    while (event := conn.next_event()) is h11.NEED_DATA:
        conn.receive_data(await reader.read(READ_SIZE))
    return event


async def _read_request(conn: h11.Connection, reader: asyncio.StreamReader) -> h11.Request | None:
    """The request head; for a CONNECT also its (empty) end, so that a 2xx answer switches h11 to the tunnel."""
    request = await _next_event(conn, reader)
    if not isinstance(request, h11.Request):
        return None
    if request.method == b"CONNECT" and not isinstance(await _next_event(conn, reader), h11.EndOfMessage):
        return None
    return request


async def _reply(conn: h11.Connection, writer: asyncio.StreamWriter, status: int, text: str) -> None:
    body = (text + "\n").encode()
    headers = [("content-type", "text/plain"), ("content-length", str(len(body))), ("connection", "close")]
    writer.write(conn.send(h11.Response(status_code=status, headers=headers)))
    writer.write(conn.send(h11.Data(data=body)))
    writer.write(conn.send(h11.EndOfMessage()))
    with contextlib.suppress(ConnectionError):
        await writer.drain()


def _target(request: h11.Request) -> HostPort | None:
    """The host:port a request wants: the authority of a CONNECT, or the host of an absolute-form URL."""
    text = request.target.decode("ascii", "replace")
    try:
        if request.method == b"CONNECT":
            target = HostPort.parse(text, default_port=0)
            return target if target.port else None
        parts = urlsplit(text)
        if parts.scheme in ("http", "https") and parts.hostname:
            return HostPort.of_url(text)
    except ValueError:
        return None
    return None


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, touch=lambda: None) -> None:
    """Copy until EOF, waiting for the writer to drain after each read (bounded memory), then half-close."""
    try:
        while data := await reader.read(READ_SIZE):
            touch()
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.transport.abort()


async def serve_tunnel(attempt, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Handle one connection to ``proxy.sock``: refuse, or tunnel it to the checked address."""
    grant = attempt.grant
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
    upstream_writer: asyncio.StreamWriter | None = None
    try:
        try:
            request = await asyncio.wait_for(_read_request(conn, reader), HEAD_TIMEOUT)
        except (h11.RemoteProtocolError, TimeoutError):
            request = None
        if request is None:
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                await _reply(conn, writer, 400, "egress proxy: bad request")
            return
        if not attempt.gate.take():
            await _reply(conn, writer, 429, "egress proxy: too many requests")
            return
        target = _target(request)
        if target is None:
            await _reply(conn, writer, 400, "egress proxy: CONNECT host:port expected")
            return
        if request.method != b"CONNECT" or target not in grant.allowed:
            reason = NOT_ALLOWED if target not in grant.allowed else "is reachable only through CONNECT"
            await attempt.blocked(target, reason)
            await _reply(conn, writer, 403, f"egress proxy: blocked: {target} {reason}")
            return
        try:
            addresses = await attempt.policy.addresses(target, grant.internal)
        except Refused as exc:
            await attempt.blocked(target, exc.reason)
            await _reply(conn, writer, 403, f"egress proxy: blocked: {exc}")
            return
        for address in addresses:
            try:
                upstream_reader, upstream_writer = await asyncio.wait_for(
                    asyncio.open_connection(address, target.port, limit=READ_SIZE), 30
                )
                break
            except (OSError, TimeoutError) as exc:
                logger.debug("egress attempt %s: %s at %s failed: %s", grant.attempt_id, target, address, exc)
        if upstream_writer is None:
            await _reply(conn, writer, 502, f"egress proxy: {target} is unreachable")
            return
        attempt.track(upstream_writer)
        guard = attempt.gate.guard_of(writer.transport)
        if guard is not None:  # from now on traffic either way keeps the tunnel from the idle timeout
            guard.open_tunnel()
        writer.write(conn.send(h11.Response(status_code=200, headers=[], reason=b"Connection Established")))
        early, _closed = conn.trailing_data
        if early:
            upstream_writer.write(early)
        logger.debug("egress attempt %s: tunnel to %s via %s", grant.attempt_id, target, address)
        touch = guard.touch if guard is not None else (lambda: None)
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer, touch))
    except h11.LocalProtocolError:
        logger.debug("egress attempt %s: protocol error on proxy.sock", grant.attempt_id, exc_info=True)
    finally:
        for w in (upstream_writer, writer):
            if w is not None:
                w.close()
                attempt.untrack(w)
