"""The attempt log websocket: history then live tail, no duplicates or gaps, only for the owner, robust to junk."""

import asyncio
import json

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser, User

from anyon.asgi import application
from execution.attempts import selectors
from execution.attempts.actions import do_transition
from execution.logs.writer import LogWriter
from execution.models import AttemptStatus
from execution.web.consumers import AttemptLogConsumer
from tests.execution.conftest import make_attempt
from tests.fixtures.sockets import signed_in

pytestmark = pytest.mark.django_db(transaction=True)


def make_user_attempt(username="carol"):
    attempt = make_attempt(username)
    return attempt.task.owner, attempt


def communicator(user, attempt_id: int, query: str = "") -> WebsocketCommunicator:
    path = f"/ws/attempts/{attempt_id}/logs/{query}"
    comm = WebsocketCommunicator(AttemptLogConsumer.as_asgi(), path)
    signed_in(comm, user)
    comm.scope["url_route"] = {"kwargs": {"attempt_id": attempt_id}}
    return comm


async def collect_until_end(comm, timeout=10):
    seqs, texts, statuses = [], [], []
    while True:
        msg = json.loads(await comm.receive_from(timeout=timeout))
        if msg["type"] == "logs":
            seqs += [r["seq"] for r in msg["records"]]
            texts += [r["text"] for r in msg["records"]]
        elif msg["type"] == "status":
            statuses.append(msg["attempt"]["status"])
        elif msg["type"] == "end":
            return seqs, texts, statuses


async def test_history_then_live_then_end_without_gaps_or_duplicates():
    user, attempt = await database_sync_to_async(make_user_attempt)()
    writer = await database_sync_to_async(LogWriter)(attempt.pk)
    for i in range(5):
        writer.write(None, "stdout", f"old {i}\n" + "x" * 20_000)  # several records per write
    await database_sync_to_async(writer.close)()
    await database_sync_to_async(do_transition)(attempt=attempt, to=AttemptStatus.PROVISIONING)
    comm = communicator(user, attempt.pk)
    connected, _ = await comm.connect()
    assert connected

    async def produce():
        for i in range(30):
            await database_sync_to_async(writer.write)(None, "stderr" if i % 3 else "stdout", f"live {i}\n")
            await database_sync_to_async(writer.flush)()
            await asyncio.sleep(0.01)
        await database_sync_to_async(do_transition)(attempt=attempt, to=AttemptStatus.FAILED, error="boom")

    producer = asyncio.create_task(produce())
    seqs, texts, statuses = await collect_until_end(comm)
    await producer
    assert seqs == list(range(1, len(seqs) + 1))
    joined = "".join(texts)
    assert all(f"live {i}\n" in joined for i in range(30)) and "old 4" in joined
    assert statuses[-1] == "failed"
    await comm.disconnect()


async def test_two_viewers_and_resume_after():
    user, attempt = await database_sync_to_async(make_user_attempt)()
    writer = await database_sync_to_async(LogWriter)(attempt.pk)
    for i in range(10):
        writer.write(None, "stdout", f"line {i}\n")
        await database_sync_to_async(writer.flush)()  # one record per line
    await database_sync_to_async(writer.close)()
    await database_sync_to_async(do_transition)(attempt=attempt, to=AttemptStatus.CANCELLED)
    full = communicator(user, attempt.pk)
    resumed = communicator(user, attempt.pk, "?after=7")
    await full.connect()
    await resumed.connect()
    seqs_full, _, _ = await collect_until_end(full)
    seqs_resumed, _, _ = await collect_until_end(resumed)
    assert seqs_full == list(range(1, 11)) and seqs_resumed == [8, 9, 10]
    await full.disconnect()
    await resumed.disconnect()


async def test_unauthenticated_and_other_users_are_refused():
    _owner, attempt = await database_sync_to_async(make_user_attempt)()
    other = await database_sync_to_async(User.objects.create_user)("eve", password="pw long enough 2")
    for user, code in ((AnonymousUser(), 4401), (other, 4404)):
        comm = communicator(user, attempt.pk)
        connected, close_code = await comm.connect()
        assert not connected and close_code == code
    staff = await database_sync_to_async(User.objects.create_user)("ops", password="pw long enough 3", is_staff=True)
    comm = communicator(staff, attempt.pk)
    connected, _ = await comm.connect()
    assert connected
    await comm.disconnect()


def test_a_viewer_connects_without_reading_the_attempts_diff_or_prompt():
    """The connect asks only whether the attempt may be watched: a finished attempt's diff (up to megabytes of
    patches) and its task's prompt are not read and decoded for every viewer."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    owner, attempt = make_user_attempt()
    with CaptureQueriesContext(connection) as queries:
        assert selectors.may_view_attempt(user=owner, attempt_id=attempt.pk)
    (query,) = queries.captured_queries
    assert '"diff"' not in query["sql"] and '"prompt"' not in query["sql"] and "LIMIT 1" in query["sql"]
    # No such attempt: the same answer as another user's (test_unauthenticated_and_other_users_are_refused).
    assert not selectors.may_view_attempt(user=owner, attempt_id=attempt.pk + 1000)


async def test_the_connect_does_not_load_the_attempt(monkeypatch):
    owner, attempt = await database_sync_to_async(make_user_attempt)()

    def whole_row(**_):
        raise AssertionError("the connect loaded the whole attempt")

    monkeypatch.setattr(selectors, "attempt_for", whole_row)
    comm = communicator(owner, attempt.pk)
    connected, _ = await comm.connect()
    assert connected
    await comm.disconnect()


async def test_malformed_frames_get_errors_not_crashes():
    user, attempt = await database_sync_to_async(make_user_attempt)()
    comm = communicator(user, attempt.pk)
    await comm.connect()
    first = json.loads(await comm.receive_from(timeout=10))
    assert first["type"] == "status"
    for frame, error in (("{not json", "malformed JSON"), ("[1,2]", "unknown"), ("x" * 10_000, "too large")):
        await comm.send_to(text_data=frame)
        assert error in json.loads(await comm.receive_from(timeout=10))["error"]
    await comm.send_to(bytes_data=b"\x00\xff")
    assert "binary" in json.loads(await comm.receive_from(timeout=10))["error"]
    await comm.send_to(text_data=json.dumps({"type": "ping"}))
    assert json.loads(await comm.receive_from(timeout=10))["type"] == "pong"
    await comm.disconnect()


async def test_routing_requires_session_auth():
    """Through the real ASGI application: without a session the socket is refused."""
    _, attempt = await database_sync_to_async(make_user_attempt)()
    comm = WebsocketCommunicator(
        application,
        f"/ws/attempts/{attempt.pk}/logs/",
        headers=[(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")],
    )
    connected, _code = await comm.connect()
    assert not connected


async def test_huge_frames_and_floods_leave_other_viewers_unaffected():
    user, attempt = await database_sync_to_async(make_user_attempt)()
    await database_sync_to_async(do_transition)(attempt=attempt, to=AttemptStatus.PROVISIONING)
    attacker, viewer = communicator(user, attempt.pk), communicator(user, attempt.pk)
    await attacker.connect()
    await viewer.connect()
    for comm in (attacker, viewer):
        assert json.loads(await comm.receive_from(timeout=10))["type"] == "status"
    await attacker.send_to(text_data="x" * 1_000_000)
    assert "too large" in json.loads(await attacker.receive_from(timeout=10))["error"]
    for _ in range(1000):  # a burst of a thousand messages
        await attacker.send_to(text_data='{"type": "ping"}')
    pongs = 0
    while pongs < 1000:
        message = json.loads(await attacker.receive_from(timeout=10))
        pongs += message["type"] == "pong"
    writer = await database_sync_to_async(LogWriter)(attempt.pk)
    writer.write(None, "stdout", "still flowing\n")
    await database_sync_to_async(writer.close)()
    got = json.loads(await viewer.receive_from(timeout=10))
    assert got["type"] == "logs" and got["records"][0]["text"] == "still flowing\n"
    await attacker.disconnect()
    await viewer.disconnect()
