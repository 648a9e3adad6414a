"""Opening and closing attempts over the control socket: sockets appear with the container user's ownership, and after
close nothing connects and what was connected is cut."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest
from aiohttp import web

from shared.egress import API_SOCKET, GIT_SOCKET, PROXY_SOCKET, EgressClient, EgressError, Grant
from tests.shared.egress.conftest import PLACEHOLDER, grant, short_tempdir, unix_session


@pytest.fixture
async def control(proxy):
    path = short_tempdir("egress-ctl-") / "control.sock"
    await proxy.start_control(path)
    return EgressClient(path, timeout=5)


async def hanging_upstream():
    """An upstream that answers the headers and one event, then stays open until cancelled (a long Claude turn)."""

    async def messages(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"event: ping\ndata: {}\n\n")
        await asyncio.sleep(60)
        return response

    app = web.Application()
    app.router.add_post("/v1/messages", messages)
    runner = web.AppRunner(app, shutdown_timeout=0.1, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"127.0.0.1:{site._server.sockets[0].getsockname()[1]}"


async def test_control_opens_sockets_owned_by_the_container_user_and_reports_status(control, attempt_dirs):
    full = grant("1", anthropic_url="https://api.anthropic.com", git_url="https://github.com", git_repository="o/r")
    sockets = await asyncio.to_thread(control.open, full, attempt_dirs[0], 4321, 4322)
    assert sorted(sockets) == [API_SOCKET, GIT_SOCKET, PROXY_SOCKET]
    for path in map(Path, sockets.values()):
        info = path.lstat()
        assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
        if os.geteuid() == 0:
            assert (info.st_uid, info.st_gid) == (4321, 4322)
    only_proxy = await asyncio.to_thread(control.open, grant("2"), attempt_dirs[1])
    assert sorted(only_proxy) == [PROXY_SOCKET]
    status = await asyncio.to_thread(control.status)
    assert [a["attempt"] for a in status["attempts"]] == ["1", "2"]
    assert await asyncio.to_thread(control.ping)
    assert stat.S_IMODE(os.stat(control.control_path).st_mode) == 0o600


async def test_control_refuses_bad_commands_with_a_reason(control, attempt_dirs):
    with pytest.raises(EgressError, match="unknown op"):
        await asyncio.to_thread(control.command, {"op": "explode", "attempt": "1"})
    with pytest.raises(EgressError, match="no grant lookup"):
        await asyncio.to_thread(control.open, "1", attempt_dirs[0])
    with pytest.raises(EgressError, match="No such file or directory"):
        await asyncio.to_thread(control.open, grant("1"), attempt_dirs[0] / "missing")
    with pytest.raises(EgressError, match="unknown grant fields"):
        await asyncio.to_thread(
            control.command,
            {"op": "open", "attempt": "1", "dir": str(attempt_dirs[0]), "grant": {"attempt_id": "1", "token": "x"}},
        )
    assert await asyncio.to_thread(control.close, "never-opened") == 0
    assert not EgressClient(attempt_dirs[0] / "no.sock").ping()


async def test_open_by_attempt_id_uses_the_grant_lookup(proxy, attempt_dirs, control):
    proxy.grant_lookup = lambda attempt_id: Grant(attempt_id=attempt_id, allowed=["registry.npmjs.org"])
    sockets = await asyncio.to_thread(control.open, "7", attempt_dirs[0])
    assert list(sockets) == [PROXY_SOCKET]
    assert proxy.attempts["7"].grant.allowed == Grant("7", allowed=["registry.npmjs.org:443"]).allowed


async def test_after_close_nothing_connects_and_open_connections_are_dropped(proxy, control, attempt_dirs):
    runner, upstream = await hanging_upstream()
    try:
        api_grant = grant("1", anthropic_url=f"http://{upstream}", internal=[upstream], allowed=[upstream])
        sockets = await asyncio.to_thread(control.open, api_grant, attempt_dirs[0])
        async with unix_session(Path(sockets[API_SOCKET])) as client:
            response = await client.post("http://b/v1/messages", json={}, headers={"x-api-key": PLACEHOLDER})
            assert await response.content.readuntil(b"\n\n") == b"event: ping\ndata: {}\n\n"
            tunnel_reader, tunnel_writer = await asyncio.open_unix_connection(sockets[PROXY_SOCKET])
            tunnel_writer.write(f"CONNECT {upstream} HTTP/1.1\r\nHost: {upstream}\r\n\r\n".encode())
            assert (await tunnel_reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")

            assert await asyncio.to_thread(control.close, "1") == 2  # the streaming request and the tunnel

            with pytest.raises(Exception):  # noqa: B017  (aiohttp raises its own payload/connection errors)
                await asyncio.wait_for(response.content.read(), 5)
            assert await asyncio.wait_for(tunnel_reader.read(), 5) == b""
            tunnel_writer.close()
        for path in sockets.values():
            assert not os.path.exists(path)
            with pytest.raises(OSError):
                await asyncio.open_unix_connection(path)
        assert (await asyncio.to_thread(control.status))["attempts"] == []
    finally:
        await runner.cleanup()


async def test_reopening_an_attempt_replaces_its_sockets(proxy, attempt_dirs):
    first = await proxy.open_attempt(grant("1"), attempt_dirs[0])
    reader, writer = await asyncio.open_unix_connection(str(first[PROXY_SOCKET]))
    await proxy.open_attempt(grant("1", allowed=["example.com"]), attempt_dirs[0])
    assert await asyncio.wait_for(reader.read(), 5) == b""  # the old connection went with the old grant
    writer.close()
    assert proxy.attempts["1"].grant.allowed
