"""``proxy.sock`` under a network policy, in the test's event loop with a stub resolver: hostile spellings of hosts
and requests reach only what the policy names, and the name checked is the name resolved."""

from __future__ import annotations

import asyncio

import pytest

from shared.egress import PROXY_SOCKET, NetworkPolicy, NetworkRule
from tests.shared.egress.conftest import ConnectionCounter, grant


async def exchange(path, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(raw)
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return answer


@pytest.mark.parametrize(
    ("request_line", "allowed"),
    [
        (b"CONNECT REGISTRY.test.:{port} HTTP/1.1", True),
        (b"CONNECT registry.test:{port} HTTP/1.1", True),
        (b"GET http://Registry.Test.:{port}/simple/ HTTP/1.1", True),
        (b"CONNECT registry.test.evil.test:{port} HTTP/1.1", False),
        (b"CONNECT evil.test:{port} HTTP/1.1", False),
        (b"GET http://registry.test@evil.test:{port}/ HTTP/1.1", False),  # userinfo: the host is evil.test
        (b"GET http://evil.test:{port}/registry.test HTTP/1.1", False),
        (b"GET https://registry.test:{port}/ HTTP/1.1", False),  # https absolute-form: CONNECT only
        (b"GET /simple/ HTTP/1.1", False),  # origin form: no target at all
        (b"CONNECT registry.test:{other} HTTP/1.1", False),
        (b"CONNECT registry%2etest:{port} HTTP/1.1", False),
    ],
)
async def test_hostile_spellings_reach_only_the_named_host(
    proxy, attempt_dirs, resolver, blocked, request_line, allowed
):
    async with ConnectionCounter() as registry, ConnectionCounter() as evil:
        resolver.table.update({"registry.test": ["127.0.0.1"], "evil.test": ["127.0.0.1"]})
        rule = NetworkRule("registry.test", registry.port)
        internal = [f"registry.test:{registry.port}", f"evil.test:{registry.port}", f"registry.test:{evil.port}"]
        policy = NetworkPolicy(mode="rules", rules=(rule,))
        paths = await proxy.open_attempt(grant("1", network=policy, internal=internal), attempt_dirs[0])
        line = request_line.replace(b"{port}", str(registry.port).encode()).replace(b"{other}", str(evil.port).encode())
        answer = await exchange(paths[PROXY_SOCKET], line + b"\r\nHost: registry.test\r\n\r\n")
        if allowed:
            assert answer.startswith(b"HTTP/1.1 200"), answer
            assert registry.count == 1
            assert resolver.calls == ["registry.test"]  # the normalised name is the one resolved and connected
        else:
            assert answer.startswith((b"HTTP/1.1 403", b"HTTP/1.1 400")), answer
            assert registry.count == 0 and evil.count == 0
            assert resolver.calls == []


async def test_the_client_host_header_is_replaced_by_the_checked_target(proxy, attempt_dirs, resolver):
    """A plain request's ``Host`` goes upstream as the host the policy checked, never the client's."""
    received: list[bytes] = []

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(upstream, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    resolver.table["registry.test"] = ["127.0.0.1"]
    policy = NetworkPolicy(mode="rules", rules=(NetworkRule("registry.test", port),))
    paths = await proxy.open_attempt(grant("1", network=policy, internal=[f"registry.test:{port}"]), attempt_dirs[0])
    raw = (
        f"GET http://registry.test:{port}/a?b=1 HTTP/1.1\r\nHost: evil.test\r\nProxy-Authorization: x\r\n"
        "Connection: keep-alive, X-Secret\r\nX-Secret: s\r\nAccept: */*\r\n\r\n"
    ).encode()
    answer = await exchange(paths[PROXY_SOCKET], raw)
    server.close()
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"ok")
    (head,) = received
    assert head.startswith(b"GET /a?b=1 HTTP/1.1\r\n")
    headers = head.lower()
    assert f"host: registry.test:{port}".encode() in headers and b"evil.test" not in headers
    assert b"proxy-authorization" not in headers and b"x-secret" not in headers and b"accept: */*" in headers
