"""The registry of logins in a web process: one per user, and at most ANYON_CLAUDE_LOGIN_STARTS_PER_MINUTE starts a
minute per user (a user starting logins in a loop, attacking the host's processes)."""

from __future__ import annotations

import json

import pytest
from channels.db import database_sync_to_async

from secrets_app.claude_login import sessions
from tests.secrets_app.claude_login.conftest import communicator, login_of, make_user, until


@pytest.mark.django_db(transaction=True)
async def test_login_starts_in_a_loop_are_limited_per_minute_with_a_clear_error(login_command, settings, monkeypatch):
    """ANYON_CLAUDE_LOGIN_STARTS_PER_MINUTE: a user starting logins in a loop gets an error in the modal; the login
    already running is not replaced by the refused start, another user still starts one, and a minute later the
    user may start again."""
    settings.ANYON_CLAUDE_LOGIN_STARTS_PER_MINUTE = 3
    mallory = await database_sync_to_async(make_user)("mallory")
    comm = communicator(mallory)
    await comm.connect()
    await until(comm, lambda m: m["type"] == "status")
    errors = []
    for _ in range(8):
        await comm.send_to(text_data=json.dumps({"type": "start", "method": "subscription"}))
        message = await until(
            comm, lambda m: m["type"] == "error" or (m["type"] == "status" and m["state"] == "starting")
        )
        if message["type"] == "error":
            errors.append(message["error"])
    assert len(errors) == 5
    assert errors[0].startswith("Too many Claude logins started: at most 3 a minute. Wait ")
    running = login_of(mallory)
    await until(comm, lambda m: m["type"] == "need_code")  # the third login goes on, untouched by the refusals
    assert not running.final and running.process.alive()

    lou = await database_sync_to_async(make_user)("lou")
    other = communicator(lou)
    await other.connect()
    await until(other, lambda m: m["type"] == "status")
    await other.send_to(text_data=json.dumps({"type": "start", "method": "subscription"}))
    await until(other, lambda m: m["type"] == "need_code")

    later = sessions.time.monotonic() + 61
    monkeypatch.setattr(sessions.time, "monotonic", lambda: later)
    await comm.send_to(text_data=json.dumps({"type": "start", "method": "subscription"}))
    await until(comm, lambda m: m["type"] == "status" and m["state"] == "starting")
    assert login_of(mallory) is not running
    for c in (comm, other):
        await c.send_to(text_data=json.dumps({"type": "cancel"}))
        await until(c, lambda m: m["type"] == "status" and m["state"] == "cancelled")
        await c.disconnect()


def test_the_registry_counts_starts_per_user_and_keeps_one_login_each(settings, monkeypatch):
    """Without a process: a refused start changes nothing, the wait it names is at most a minute, and an ended
    login is not the user's current one."""
    settings.ANYON_CLAUDE_LOGIN_STARTS_PER_MINUTE = 2
    now = [1000.0]
    monkeypatch.setattr(sessions.time, "monotonic", lambda: now[0])
    first, old = sessions.register_new(7)
    assert old is None and sessions.current_session(7) is first
    second, old = sessions.register_new(7)
    assert old is first and sessions.current_session(7) is second
    now[0] += 30
    with pytest.raises(sessions.ConnectError, match=r"at most 2 a minute\. Wait 31 s"):
        sessions.register_new(7)
    assert sessions.current_session(7) is second
    assert sessions.register_new(8)[1] is None  # another user has a count of their own
    second.state = "cancelled"
    assert sessions.current_session(7) is None
    now[0] += 31
    third, old = sessions.register_new(7)
    assert old is second and sessions.current_session(7) is third
    settings.ANYON_CLAUDE_LOGIN_STARTS_PER_MINUTE = 0  # no limit
    for _ in range(5):
        sessions.register_new(9)
