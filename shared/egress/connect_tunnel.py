"""``proxy.sock``: a forward proxy for what the attempt's network policy allows (``shared/egress/network_policy.py``).

h11 parses the request: a ``CONNECT`` opens a tunnel, an absolute-form ``http://`` request is forwarded once
(``shared/egress/plain_http.py``; "off" policies take tunnels only, as before environments). Nothing is added (no
credential; TLS stays end to end between the client and the host). A refusal by the policy is a ``403`` whose body
(and a ``CONNECT``'s reason) the agent can read and pass on; every refusal is reported to the wiring's
``on_blocked`` with the target, the reason and, where visible, the method and path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from urllib.parse import urlsplit

import h11

from shared.egress.address_policy import Refused
from shared.egress.grant import HostPort
from shared.egress.network_policy import CONNECT_ONLY, Decision, decide, normalize_host
from shared.egress.plain_http import forward_plain

logger = logging.getLogger(__name__)

READ_SIZE = 64 * 1024
MAX_HEAD = 16 * 1024
HEAD_TIMEOUT = 30.0


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


def refusal_text(target: HostPort) -> str:
    """What the agent reads when its network policy refuses a host (the body, and a CONNECT's reason too)."""
    return f"blocked by Anyon's network policy: host {target.host} (port {target.port}); ask the user to allow it"


async def _refuse(conn: h11.Connection, writer: asyncio.StreamWriter, target: HostPort) -> None:
    text = refusal_text(target)
    body = (text + "\n").encode()
    headers = [("content-type", "text/plain"), ("content-length", str(len(body))), ("connection", "close")]
    writer.write(conn.send(h11.Response(status_code=403, headers=headers, reason=text.encode())))
    writer.write(conn.send(h11.Data(data=body)))
    writer.write(conn.send(h11.EndOfMessage()))
    with contextlib.suppress(ConnectionError):
        await writer.drain()


def _decide(attempt, request: h11.Request, target: HostPort) -> tuple[HostPort, str | None, str | None, Decision]:
    """The normalised target, the method and path where visible (plain HTTP), and the policy's decision."""
    tunnel = request.method == b"CONNECT"
    method = None if tunnel else request.method.decode("ascii", "replace").upper()
    path = None
    if not tunnel:
        parts = urlsplit(request.target.decode("ascii", "replace"))
        path = parts.path or "/"
        if parts.scheme != "http":
            return target, method, path, Decision(False, CONNECT_ONLY)
    try:
        target = HostPort(normalize_host(target.host), target.port)
    except ValueError:
        return target, method, path, Decision(False, "is not a valid host name")
    return target, method, path, decide(attempt.network, attempt.bounds, method, target.host, target.port, path)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, touch=lambda: None, count=None) -> None:
    """Copy until EOF, waiting for the writer to drain after each read (bounded memory), then half-close."""
    try:
        while data := await reader.read(READ_SIZE):
            touch()
            if count is not None:
                count(len(data))
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.transport.abort()


async def serve_tunnel(attempt, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Handle one connection to ``proxy.sock``: refuse, tunnel a CONNECT, or forward one plain-HTTP request."""
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
        target, method, path, decision = _decide(attempt, request, target)
        if not decision.allowed:
            await attempt.blocked(target, decision.reason, method=method, path=path)
            await _refuse(conn, writer, target)
            return
        grant = attempt.grant
        try:
            addresses = await attempt.policy.addresses(target, grant.internal)
        except Refused as exc:
            await attempt.blocked(target, exc.reason, method=method, path=path)
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
        attempt.live[writer] = (target, method, path, upstream_writer)  # re-decided when the policy changes
        guard = attempt.gate.guard_of(writer.transport)
        if guard is not None:  # from now on traffic either way keeps the connection from the idle timeout
            guard.open_tunnel()
        touch = guard.touch if guard is not None else (lambda: None)
        if method is not None:
            use = attempt.record.request(target.host, target.port, method, path or "/")
            try:
                await forward_plain(conn, request, target, reader, writer, upstream_reader, upstream_writer, use, touch)
            except (h11.ProtocolError, ConnectionError, OSError, TimeoutError) as exc:
                logger.debug("egress attempt %s: plain HTTP to %s ended: %s", grant.attempt_id, target, exc)
                writer.transport.abort()
            return
        use = attempt.record.tunnel(target.host, target.port)
        writer.write(conn.send(h11.Response(status_code=200, headers=[], reason=b"Connection Established")))
        early, _closed = conn.trailing_data
        if early:
            use.bytes_out += len(early)
            upstream_writer.write(early)
        logger.debug("egress attempt %s: tunnel to %s via %s", grant.attempt_id, target, address)

        def sent(n: int) -> None:
            use.bytes_out += n

        def received(n: int) -> None:
            use.bytes_in += n

        await asyncio.gather(
            _pipe(reader, upstream_writer, count=sent), _pipe(upstream_reader, writer, touch, received)
        )
    except h11.LocalProtocolError:
        logger.debug("egress attempt %s: protocol error on proxy.sock", grant.attempt_id, exc_info=True)
    finally:
        attempt.live.pop(writer, None)
        for w in (upstream_writer, writer):
            if w is not None:
                w.close()
                attempt.untrack(w)
