"""Websocket limits (docs/DEPLOYMENT.md, "Limits"): the web server refuses oversized frames before buffering them,
and one user's sockets are counted. Each is attacked, and the user's other sockets and other users' go on."""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from execution.attempts.actions import do_create_task, do_start_attempt
from execution.models import Attempt, AttemptStatus, LogRecord
from execution.web.consumers import AttemptLogConsumer
from secrets_app.consumers import ClaudeLoginConsumer
from shared.live.consumer import open_sockets
from tests.execution.conftest import make_attempt
from tests.fixtures.queueing import held_from_workers
from tests.fixtures.sockets import signed_in

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.hostile]


# --- websockets per user ------------------------------------------------------------------------------------------


async def test_too_many_sockets_of_one_user_are_refused_and_nothing_else_stops(settings):
    """ANYON_MAX_WEBSOCKETS_PER_USER counts every live view of a user (attempt logs, the Claude login): one more is
    told why and closed with 4429; the user's open sockets and other users' go on, and a closed one frees a place."""

    settings.ANYON_MAX_WEBSOCKETS_PER_USER = 3
    attempt = await database_sync_to_async(make_attempt)("mallory")
    mallory = attempt.task.owner
    await database_sync_to_async(Attempt.objects.filter(pk=attempt.pk).update)(status=AttemptStatus.RUNNING)

    def log_socket(user, at=attempt):
        comm = WebsocketCommunicator(AttemptLogConsumer.as_asgi(), f"/ws/attempts/{at.pk}/logs/")
        signed_in(comm, user)
        comm.scope["url_route"] = {"kwargs": {"attempt_id": at.pk}}
        return comm

    def login_socket(user):
        comm = WebsocketCommunicator(ClaudeLoginConsumer.as_asgi(), "/ws/settings/claude-login/")
        return signed_in(comm, user)

    opened = [log_socket(mallory), log_socket(mallory), login_socket(mallory)]
    for comm in opened:
        assert (await comm.connect())[0]
        await comm.receive_from(timeout=5)  # the first status
    assert open_sockets(mallory.pk) == 3

    for extra in (log_socket(mallory), login_socket(mallory)):  # one more of either kind
        assert (await extra.connect())[0]
        assert json.loads(await extra.receive_from(timeout=5)) == {
            "type": "error",
            "error": "Too many open live views: at most 3 per user. Close some tabs, then reload this page.",
        }
        assert (await extra.receive_output(timeout=5)) == {"type": "websocket.close", "code": 4429}
        await extra.disconnect()
    assert open_sockets(mallory.pk) == 3

    # The open ones still answer; another user's socket opens.
    await opened[0].send_to(text_data=json.dumps({"type": "ping"}))
    while json.loads(await opened[0].receive_from(timeout=5))["type"] != "pong":
        pass
    bobs_attempt = await database_sync_to_async(make_attempt)("bob")
    bobs = log_socket(bobs_attempt.task.owner, bobs_attempt)
    assert (await bobs.connect())[0]
    assert json.loads(await bobs.receive_from(timeout=5))["type"] == "status"

    # Closing one makes room for a new one.
    await opened.pop().disconnect()
    await asyncio.sleep(0.1)
    again = log_socket(mallory)
    assert (await again.connect())[0]
    assert json.loads(await again.receive_from(timeout=5))["type"] == "status"
    for comm in (*opened, again, bobs):
        await comm.disconnect()
    assert open_sockets(mallory.pk) == 0


# --- websocket frame size -----------------------------------------------------------------------------------------


def _peak_memory_kb(pid: int) -> int:
    from pathlib import Path

    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_a_10_mb_websocket_frame_is_refused_by_the_server_before_it_is_buffered(alice):
    """The web server as `manage.py serve` starts it (ANYON_WS_MAX_MESSAGE_BYTES, 64 KiB by default): a 10 MB frame
    ends its socket as soon as its header announces the size, without the server holding it (its peak memory does
    not grow by the frame); a frame under the limit still reaches the consumer, and the user's other socket goes
    on."""
    import websockets

    from tests.fixtures.processes import start_asgi, subprocess_env

    task = do_create_task(owner=alice, title="t", repo_url="https://github.com/a/w", base_branch="main", prompt="p")
    with held_from_workers():
        attempt = do_start_attempt(task=task, plan=[])
    Attempt.objects.filter(pk=attempt.pk).update(status=AttemptStatus.RUNNING)
    client = Client()
    client.force_login(alice)
    server = start_asgi("frame-limit-web", subprocess_env())
    port = server.url.rsplit(":", 1)[1]
    url = f"ws://127.0.0.1:{port}/ws/attempts/{attempt.pk}/logs/"
    headers = {"Cookie": f"sessionid={client.cookies['sessionid'].value}", "Origin": f"http://127.0.0.1:{port}"}

    # The viewer's own batches are far larger than what it may send: they must still arrive whole.
    LogRecord.objects.bulk_create(
        LogRecord(attempt=attempt, seq=seq, stream="stdout", text=f"{seq:04d} " + "z" * 16_000 + "\n")
        for seq in range(1, 21)
    )

    async def attack() -> tuple[list[int], int]:
        async with websockets.connect(url, additional_headers=headers, max_size=None) as bystander:
            history = json.loads(await asyncio.wait_for(bystander.recv(), timeout=10))
            assert history["type"] == "logs" and len(history["records"]) == 20  # one 320 KB message
            assert json.loads(await bystander.recv())["type"] == "status"
            before = _peak_memory_kb(server.proc.pid)
            codes = []
            for size in (512 * 1024, 10 * 1024 * 1024):  # 512 KiB: under daphne's own default limit (1 MiB)
                async with websockets.connect(url, additional_headers=headers, max_size=None) as attacker:
                    assert json.loads(await attacker.recv())["type"] == "logs"
                    assert json.loads(await attacker.recv())["type"] == "status"
                    # Under the server's limit: it reaches the consumer, which answers and keeps the socket.
                    await attacker.send("y" * 60_000)
                    assert json.loads(await attacker.recv()) == {"type": "error", "error": "message too large"}
                    try:
                        await attacker.send("x" * size)
                        while True:
                            await asyncio.wait_for(attacker.recv(), timeout=10)
                    except websockets.ConnectionClosed as closed:
                        # autobahn closes with 1009, or fails the connection by dropping it (1006 here)
                        codes.append(closed.rcvd.code if closed.rcvd else 1006)
            grown = _peak_memory_kb(server.proc.pid) - before
            await bystander.send(json.dumps({"type": "ping"}))
            while json.loads(await asyncio.wait_for(bystander.recv(), timeout=10))["type"] != "pong":
                pass
            return codes, grown

    try:
        codes, grown = asyncio.run(attack())
    finally:
        server.stop()
    assert len(codes) == 2 and set(codes) <= {1009, 1006}  # message too big: closed, or dropped, by the server
    assert grown < 5 * 1024, f"the server's peak memory grew by {grown} kB: it buffered the frame"
