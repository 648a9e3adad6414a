"""Starting, answering and cancelling a subscription login over the login websocket (the fake `claude setup-token`
in a PTY on the host), and connecting with a pasted key on the same socket."""

from __future__ import annotations

import json

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import AnonymousUser

from secrets_app.claude_login import State
from secrets_app.models import Secret
from secrets_app.secret_store import fetch_secret
from tests.fixtures.leaks import track_secret
from tests.secrets_app.claude_login.conftest import (
    communicator,
    eventually,
    login_of,
    make_user,
    run_subscription_login,
    start_subscription,
    until,
    waiting_for_code,
)
from tests.secrets_app.conftest import API_KEY


@pytest.mark.django_db(transaction=True)
async def test_subscription_login_saves_the_token(login_command, monkeypatch):
    token = track_secret("sk-ant-oat01-" + "L" * 70 + "-xyzAA")
    monkeypatch.setenv("FAKE_LOGIN_TOKEN", token)
    user = await database_sync_to_async(make_user)()
    transcript = await run_subscription_login(user)
    assert token not in transcript and "***" in transcript and "thecode123" not in transcript
    secret = await database_sync_to_async(Secret.objects.get)(owner=user, provider="claude")
    assert secret.kind == "oauth_token" and secret.fingerprint == token[-4:]
    assert 364 <= (secret.expires_at - secret.created_at).days <= 365
    stored = await database_sync_to_async(fetch_secret)(owner=user, provider="claude", purpose="t", actor="t")
    assert stored.value == token


@pytest.mark.django_db(transaction=True)
async def test_subscription_login_with_the_2_1_screens(login_command, monkeypatch):
    """The fake CLI drawing 2.1.332's screens (cursor-placed words, OSC 8 link, boxed prompt) end to end."""
    token = track_secret("sk-ant-oat01-" + "N" * 70 + "-xyzAA")
    monkeypatch.setenv("FAKE_LOGIN_TOKEN", token)
    monkeypatch.setenv("FAKE_LOGIN_SCREENS", "2.1.332")
    user = await database_sync_to_async(make_user)()
    transcript = await run_subscription_login(user)
    assert "Paste code here if prompted" in transcript and token not in transcript
    stored = await database_sync_to_async(fetch_secret)(owner=user, provider="claude", purpose="t", actor="t")
    assert stored.value == token


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("screens", ["2.0.31", "2.1.332"])
async def test_wrong_code_is_an_error_and_raises_an_alert(login_command, monkeypatch, screens):
    """2.1.x stays open after the error ("Press Enter to retry"): the login ends on the error all the same."""
    from shared.models import Alert

    monkeypatch.setenv("FAKE_LOGIN_SCREENS", screens)
    user = await database_sync_to_async(make_user)()
    message = await run_subscription_login(user, wrong_first=True)
    assert "Invalid code" in message
    assert await database_sync_to_async(Alert.objects.filter(kind="claude_login_failed").exists)()
    assert not await database_sync_to_async(Secret.objects.exists)()


@pytest.mark.django_db(transaction=True)
async def test_cancel_reattach_and_out_of_order(login_command):
    user = await database_sync_to_async(make_user)()
    comm = communicator(user)
    await comm.connect()
    await until(comm, lambda m: m["type"] == "status")
    await comm.send_to(text_data=json.dumps({"type": "code", "code": "a#b"}))
    assert "no login waiting" in (await until(comm, lambda m: m["type"] == "error"))["error"]
    await comm.send_to(text_data=json.dumps({"type": "start", "method": "subscription"}))
    url = (await until(comm, lambda m: m["type"] == "url"))["url"]
    await until(comm, lambda m: m["type"] == "need_code")
    # A refreshed page re-attaches and sees the state, including the URL.
    second = communicator(user)
    await second.connect()
    assert (await until(second, lambda m: m["type"] == "status"))["state"] == "waiting_code"
    assert (await until(second, lambda m: m["type"] == "url"))["url"] == url
    await second.send_to(text_data=json.dumps({"type": "cancel"}))
    for c in (comm, second):
        assert (await until(c, lambda m: m["type"] == "status" and m["state"] != "waiting_code"))[
            "state"
        ] == "cancelled"
    session = login_of(user)
    await eventually(lambda: not session.process.alive())
    await comm.disconnect()
    await second.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_new_start_replaces_the_running_login(login_command):
    """One login per user: starting again cancels the running one (its CLI stopped) and the page follows the new."""
    user = await database_sync_to_async(make_user)()
    comm = await waiting_for_code(user)
    first = login_of(user)
    await start_subscription(comm)
    assert login_of(user) is not first
    assert first.state == State.CANCELLED and first.message == "Replaced by a new login."
    await eventually(lambda: not first.process.alive())
    await comm.send_to(text_data=json.dumps({"type": "cancel"}))
    await until(comm, lambda m: m["type"] == "status" and m["state"] == "cancelled")
    await comm.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_timeout_and_closed_tab(login_command, settings):
    user = await database_sync_to_async(make_user)()
    settings.ANYON_CLAUDE_LOGIN_TIMEOUT = 1
    comm = communicator(user)
    await comm.connect()
    await comm.send_to(text_data=json.dumps({"type": "start", "method": "subscription"}))
    timed_out = await until(comm, lambda m: m["type"] == "status" and m["state"] == "timed_out")
    assert "waited too long" in timed_out["message"]
    settings.ANYON_CLAUDE_LOGIN_TIMEOUT = 600
    settings.ANYON_CLAUDE_LOGIN_GRACE = 0
    await start_subscription(comm)
    session = login_of(user)
    await comm.disconnect()  # the tab is closed
    await eventually(lambda: session.final and not session.process.alive())
    assert session.state == "cancelled"


@pytest.mark.django_db(transaction=True)
async def test_bad_messages_and_unauthenticated(login_command, anthropic):
    refused = communicator(AnonymousUser())
    connected, code = await refused.connect()
    assert not connected and code == 4401
    user = await database_sync_to_async(make_user)()
    comm = communicator(user)
    await comm.connect()
    await until(comm, lambda m: m["type"] == "status")
    for frame, error in (
        ("{nope", "malformed JSON"),
        ("[]", "object with a type"),
        ("x" * 9000, "too large"),
        (json.dumps({"type": "dance"}), "unknown message type"),
        (json.dumps({"type": "start", "method": "magic"}), "Choose a method"),
        (json.dumps({"type": "start", "method": "api_key", "value": 42}), "Paste the key"),
        (json.dumps({"type": "cancel"}), "no login to cancel"),
    ):
        await comm.send_to(text_data=frame)
        assert error in (await until(comm, lambda m: m["type"] == "error"))["error"], frame
    await comm.send_to(bytes_data=b"\x00")
    assert "binary" in (await until(comm, lambda m: m["type"] == "error"))["error"]
    await comm.send_to(
        text_data=json.dumps({"type": "start", "method": "api_key", "value": "sk-ant-api03-" + "W" * 30})
    )
    assert "rejected" in (await until(comm, lambda m: m["type"] == "error"))["error"]
    await comm.send_to(text_data=json.dumps({"type": "start", "method": "api_key", "value": API_KEY}))
    await until(comm, lambda m: m["type"] == "saved")
    assert await database_sync_to_async(Secret.objects.filter(owner=user, kind="api_key").exists)()
    await comm.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_code_that_is_not_the_shape_of_one_is_refused_before_it_reaches_the_cli(login_command):
    user = await database_sync_to_async(make_user)()
    comm = await waiting_for_code(user)
    for code, error in (
        (42, "Paste the code."),
        ("no hash here", "Paste the whole code"),
        ("abcd#" + "c" * 2000, "Paste the whole code"),
    ):
        await comm.send_to(text_data=json.dumps({"type": "code", "code": code}))
        assert error in (await until(comm, lambda m: m["type"] == "error"))["error"]
    assert login_of(user).state == State.WAITING_CODE
    await comm.send_to(text_data=json.dumps({"type": "cancel"}))
    await until(comm, lambda m: m["type"] == "status" and m["state"] == "cancelled")
    await comm.disconnect()
