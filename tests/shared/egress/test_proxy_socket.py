"""``proxy.sock``: ``CONNECT`` reaches allowlisted host:port only; every refusal is a 403 reported to ``on_blocked``,
and the refused target never sees a connection. All targets are on 127.0.0.1; names come from the stub resolver."""

from __future__ import annotations

import asyncio
import http.client

import pytest

from shared.egress import PROXY_SOCKET
from tests.fakes.http_server import FakeHTTPServer, Recorded, Reply
from tests.shared.egress.conftest import ConnectionCounter, grant, tcp_bridge

pytestmark = pytest.mark.hostile  # attacks: counted in docs/QA_CHECKLIST.md


class Hello(FakeHTTPServer):
    def handle(self, request: Recorded) -> Reply:
        return Reply(200, b"hello", {"Content-Type": "text/plain"})


def through_tunnel(bridge_port: int, host: str, port: int) -> tuple[int, bytes]:
    """What a package manager does with HTTPS_PROXY (minus TLS): CONNECT, then HTTP inside the tunnel."""
    connection = http.client.HTTPConnection("127.0.0.1", bridge_port, timeout=10)
    connection.set_tunnel(host, port)
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        return response.status, response.read()
    except OSError as exc:  # http.client raises on a refused CONNECT: "Tunnel connection failed: 403 ..."
        return int(str(exc).split("failed: ")[1].split()[0]), b""
    finally:
        connection.close()


async def test_connect_to_an_allowlisted_host_tunnels_without_adding_anything(proxy, attempt_dirs, resolver, blocked):
    with Hello() as upstream:
        port = upstream.server.server_address[1]
        resolver.table["registry.test"] = ["127.0.0.1"]
        allowed = [f"127.0.0.1:{port}", f"registry.test:{port}"]
        paths = await proxy.open_attempt(grant("1", allowed=allowed, internal=allowed), attempt_dirs[0])
        async with tcp_bridge(paths[PROXY_SOCKET]) as bridge:
            assert await asyncio.to_thread(through_tunnel, bridge, "127.0.0.1", port) == (200, b"hello")
            assert await asyncio.to_thread(through_tunnel, bridge, "registry.test", port) == (200, b"hello")
        assert resolver.calls == ["registry.test"]  # resolved once, and the connection went to that answer
        assert all("authorization" not in r.headers for r in upstream.requests)
        assert len(upstream.requests) == 2
    assert blocked.events == []


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("127.0.0.1:{evil}", "is not on the allowlist"),  # by IP
        ("evil.test:{evil}", "is not on the allowlist"),  # by name
        ("rebind.test:{evil}", "resolves to a loopback address (127.0.0.1)"),  # allowlisted, but not internal
        ("127.0.0.1:{other}", "is not on the allowlist"),  # allowlisted host, other port
    ],
)
async def test_connect_elsewhere_is_refused_reported_and_never_reaches_the_target(
    proxy, attempt_dirs, resolver, blocked, target, reason
):
    resolver.table.update({"evil.test": ["127.0.0.1"], "rebind.test": ["127.0.0.1"]})
    async with ConnectionCounter() as evil, ConnectionCounter() as good:
        allowed = [f"rebind.test:{evil.port}", f"127.0.0.1:{good.port}"]
        paths = await proxy.open_attempt(
            grant("1", allowed=allowed, internal=[f"127.0.0.1:{good.port}"]), attempt_dirs[0]
        )
        host, _, port = target.format(evil=evil.port, other=evil.port).rpartition(":")
        async with tcp_bridge(paths[PROXY_SOCKET]) as bridge:
            status, _ = await asyncio.to_thread(through_tunnel, bridge, host, int(port))
        assert status == 403
        assert evil.count == 0
    assert blocked.events == [("1", host, int(port), reason)]
    assert proxy.status()["attempts"][0]["blocked"] == 1


async def test_plain_http_through_the_proxy_is_refused_and_reported(proxy, attempt_dirs, blocked):
    async with ConnectionCounter() as evil:
        paths = await proxy.open_attempt(grant("1", allowed=[f"127.0.0.1:{evil.port}"]), attempt_dirs[0])
        async with tcp_bridge(paths[PROXY_SOCKET]) as bridge:
            connection = http.client.HTTPConnection("127.0.0.1", bridge, timeout=10)
            connection.request("GET", f"http://127.0.0.1:{evil.port}/steal")
            response = await asyncio.to_thread(connection.getresponse)
            assert response.status == 403
            connection.close()
        assert evil.count == 0
    assert blocked.events == [("1", "127.0.0.1", evil.port, "is reachable only through CONNECT")]


async def test_garbage_on_the_proxy_socket_gets_400_and_no_report(proxy, attempt_dirs, blocked):
    paths = await proxy.open_attempt(grant("1"), attempt_dirs[0])
    reader, writer = await asyncio.open_unix_connection(str(paths[PROXY_SOCKET]))
    writer.write(b"\x16\x03\x01 not http at all\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 400")
    assert blocked.events == []
