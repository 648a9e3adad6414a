"""Live sockets end with their session: log-out and deactivation close them at once, and a session deleted or
expired elsewhere is found by the periodic re-check. Only the sockets of that session (log-out) or that user
(deactivation) close: another user's, another session's and a staff viewer's are judged on their own.

The sockets go through the whole ASGI stack (anyon.asgi: origin check, session cookie, auth) with real sessions."""

import json
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone

from anyon.asgi import application
from shared.live.sessions import CLOSE_SIGNED_OUT, still_signed_in
from tests.execution.conftest import make_attempt

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.hostile]


@pytest.fixture(autouse=True)
def _checks(settings):
    settings.DOCKER_HOST = "unix:///nonexistent/docker.sock"
    settings.ANYON_LIVE_SESSION_CHECK_SECONDS = 3600  # tests of the periodic re-check lower it


def session_of(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies[django_settings.SESSION_COOKIE_NAME].value


def log_out(session_key: str) -> None:
    """Through the real log-out view, with that session's cookie."""
    client = Client()
    client.cookies[django_settings.SESSION_COOKIE_NAME] = session_key
    assert client.post("/logout/").status_code == 302
    assert not Session.objects.filter(session_key=session_key).exists()


def communicator(path: str, session_key: str) -> WebsocketCommunicator:
    cookie = f"{django_settings.SESSION_COOKIE_NAME}={session_key}; csrftoken={'c' * 32}"
    return WebsocketCommunicator(
        application, path, headers=[(b"origin", b"http://127.0.0.1"), (b"cookie", cookie.encode())]
    )


async def open_log(attempt_id: int, session_key: str) -> WebsocketCommunicator:
    comm = communicator(f"/ws/attempts/{attempt_id}/logs/", session_key)
    connected, _ = await comm.connect()
    assert connected
    assert json.loads(await comm.receive_from(timeout=10))["type"] == "status"  # the queued attempt
    return comm


async def open_settings(session_key: str) -> WebsocketCommunicator:
    comm = communicator("/ws/settings/", session_key)
    connected, _ = await comm.connect()
    assert connected
    for _ in range(2):  # the two cards of the initial sync
        assert json.loads(await comm.receive_from(timeout=10))["type"] == "card"
    return comm


async def closed(comm, timeout: float = 5) -> int:
    """The close code the server sent within ``timeout`` (anything sent before it is skipped)."""
    while True:
        output = await comm.receive_output(timeout=timeout)
        if output["type"] == "websocket.close":
            return output.get("code")


async def still_open(comm) -> bool:
    """The socket still answers: a ping (attempt log) or any frame (settings) gets a reply."""
    await comm.send_to(text_data=json.dumps({"type": "ping"}))
    reply = json.loads(await comm.receive_from(timeout=5))
    return reply["type"] in ("pong", "error")


def make_world():
    """alice with a queued attempt, bob with his own, and ops, a staff account (staff may read alice's log)."""
    alice_attempt = make_attempt("alice")
    bob_attempt = make_attempt("bob")
    ops = User.objects.create_user("ops", password="ops password 123", is_staff=True)
    return alice_attempt.task.owner, alice_attempt, bob_attempt.task.owner, bob_attempt, ops


async def test_log_out_closes_that_sessions_sockets_and_no_one_elses():
    alice, alice_attempt, bob, bob_attempt, ops = await database_sync_to_async(make_world)()
    alice_laptop, alice_phone = [await database_sync_to_async(session_of)(alice) for _ in range(2)]
    bob_session = await database_sync_to_async(session_of)(bob)
    ops_session = await database_sync_to_async(session_of)(ops)
    laptop_log = await open_log(alice_attempt.pk, alice_laptop)
    laptop_settings = await open_settings(alice_laptop)
    phone_log = await open_log(alice_attempt.pk, alice_phone)
    bob_log = await open_log(bob_attempt.pk, bob_session)
    bob_settings = await open_settings(bob_session)
    ops_log = await open_log(alice_attempt.pk, ops_session)  # staff watching alice's attempt

    await database_sync_to_async(log_out)(alice_laptop)
    assert await closed(laptop_log) == CLOSE_SIGNED_OUT
    assert await closed(laptop_settings) == CLOSE_SIGNED_OUT
    # alice's other session, bob's sockets and the staff viewer of alice's attempt stay.
    for comm in (phone_log, bob_log, bob_settings, ops_log):
        assert await still_open(comm)

    # The staff account logging out closes only its own socket, on alice's attempt.
    await database_sync_to_async(log_out)(ops_session)
    assert await closed(ops_log) == CLOSE_SIGNED_OUT
    assert await still_open(phone_log)
    # A closed session cannot open a new socket.
    connected, code = await communicator(f"/ws/attempts/{alice_attempt.pk}/logs/", alice_laptop).connect()
    assert not connected and code == CLOSE_SIGNED_OUT
    for comm in (phone_log, bob_log, bob_settings):
        await comm.disconnect()


async def test_deactivation_closes_every_socket_of_that_user_only():
    alice, alice_attempt, bob, bob_attempt, ops = await database_sync_to_async(make_world)()
    alice_session = await database_sync_to_async(session_of)(alice)
    ops_session = await database_sync_to_async(session_of)(ops)
    bob_session = await database_sync_to_async(session_of)(bob)
    alice_log = await open_log(alice_attempt.pk, alice_session)
    alice_settings = await open_settings(alice_session)
    ops_log = await open_log(alice_attempt.pk, ops_session)
    ops_settings = await open_settings(ops_session)
    bob_log = await open_log(bob_attempt.pk, bob_session)

    async def deactivate(user):
        user.is_active = False
        await database_sync_to_async(user.save)()

    await deactivate(ops)  # the staff account first: its sockets on alice's attempt and its own settings
    assert await closed(ops_log) == CLOSE_SIGNED_OUT
    assert await closed(ops_settings) == CLOSE_SIGNED_OUT
    assert await still_open(alice_log) and await still_open(alice_settings) and await still_open(bob_log)

    await deactivate(alice)
    assert await closed(alice_log) == CLOSE_SIGNED_OUT
    assert await closed(alice_settings) == CLOSE_SIGNED_OUT
    assert await still_open(bob_log)
    # A save that changes nothing about signing in (alice's last_login) does not close bob's socket either.
    bob.last_login = timezone.now()
    await database_sync_to_async(bob.save)(update_fields=["last_login"])
    assert await still_open(bob_log)
    await bob_log.disconnect()


async def test_the_periodic_re_check_finds_a_session_deleted_or_expired_elsewhere(settings):
    settings.ANYON_LIVE_SESSION_CHECK_SECONDS = 0.2
    alice, alice_attempt, bob, _bob_attempt, ops = await database_sync_to_async(make_world)()
    deleted, expired = [await database_sync_to_async(session_of)(alice) for _ in range(2)]
    ops_session = await database_sync_to_async(session_of)(ops)
    bob_session = await database_sync_to_async(session_of)(bob)
    deleted_log = await open_log(alice_attempt.pk, deleted)
    deleted_settings = await open_settings(deleted)
    expired_log = await open_log(alice_attempt.pk, expired)
    ops_log = await open_log(alice_attempt.pk, ops_session)
    bob_settings = await open_settings(bob_session)

    # No signal, no wake-up: what `clearsessions`, another host or a database admin does.
    await database_sync_to_async(Session.objects.filter(session_key=deleted).delete)()
    assert await closed(deleted_log, timeout=3) == CLOSE_SIGNED_OUT
    assert await closed(deleted_settings, timeout=3) == CLOSE_SIGNED_OUT
    await database_sync_to_async(Session.objects.filter(session_key=expired).update)(
        expire_date=timezone.now() - timedelta(seconds=1)
    )
    assert await closed(expired_log, timeout=3) == CLOSE_SIGNED_OUT
    # A deactivation that bypasses signals (a queryset update) is found the same way.
    await database_sync_to_async(User.objects.filter(pk=ops.pk).update)(is_active=False)
    assert await closed(ops_log, timeout=3) == CLOSE_SIGNED_OUT
    assert await still_open(bob_settings)  # checked many times by now, and still valid
    await bob_settings.disconnect()


async def test_a_password_change_ends_the_other_sessions_sockets():
    alice, alice_attempt, *_ = await database_sync_to_async(make_world)()
    alice_session = await database_sync_to_async(session_of)(alice)
    alice_log = await open_log(alice_attempt.pk, alice_session)

    def change_password():
        alice.set_password("a brand new password 456")
        alice.save()

    await database_sync_to_async(change_password)()
    assert await closed(alice_log) == CLOSE_SIGNED_OUT


def test_still_signed_in_accepts_only_the_same_live_user(db):
    alice = User.objects.create_user("alice", password="alice password 123")
    bob = User.objects.create_user("bob", password="bob password 123")
    key = session_of(alice)
    assert still_signed_in(user_id=alice.pk, session_key=key)
    assert not still_signed_in(user_id=bob.pk, session_key=key)  # alice's session does not vouch for bob
    assert not still_signed_in(user_id=alice.pk, session_key="no-such-session-key-000000000000")
    assert not still_signed_in(user_id=alice.pk, session_key=session_of(bob))
    assert Session.objects.filter(session_key=key).exists()  # checking never flushes or cycles the session
    assert not still_signed_in(user_id=alice.pk, session_key="")  # no session: nothing vouches for the user


async def test_a_socket_whose_scope_names_a_user_without_a_session_is_signed_out_at_the_first_check(settings):
    """Only a session signs a socket in: a scope that carries a user but no session (nothing in the ASGI stack makes
    one; a middleware mistake could) is closed at the periodic re-check, however active the user is."""
    from execution.web.consumers import AttemptLogConsumer

    settings.ANYON_LIVE_SESSION_CHECK_SECONDS = 0.2
    alice, alice_attempt, *_ = await database_sync_to_async(make_world)()
    comm = WebsocketCommunicator(AttemptLogConsumer.as_asgi(), f"/ws/attempts/{alice_attempt.pk}/logs/")
    comm.scope["user"] = alice
    comm.scope["url_route"] = {"kwargs": {"attempt_id": alice_attempt.pk}}
    assert (await comm.connect())[0]
    assert await closed(comm, timeout=5) == CLOSE_SIGNED_OUT
