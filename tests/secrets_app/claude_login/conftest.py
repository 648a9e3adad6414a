"""What the Claude login's tests share: a websocket to the login consumer, waiting on its messages, the fake
`claude setup-token` on the host. (tests/conftest.py gives each test an empty registry of logins.)"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import parse_qs, urlsplit

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User

from secrets_app.claude_login import sessions
from secrets_app.consumers import ClaudeLoginConsumer
from tests.fixtures.processes import FAKE_LOGIN_CLI
from tests.fixtures.sockets import signed_in


@pytest.fixture
def login_command(settings):
    settings.ANYON_CLAUDE_LOGIN_COMMAND = f"bash {FAKE_LOGIN_CLI}"


def communicator(user) -> WebsocketCommunicator:
    comm = WebsocketCommunicator(ClaudeLoginConsumer.as_asgi(), "/ws/settings/claude-login/")
    return signed_in(comm, user)


async def until(comm, predicate, timeout=20.0) -> dict:
    """Receive messages until one satisfies ``predicate``; return it."""

    async def loop():
        while True:
            message = json.loads(await comm.receive_from(timeout=timeout))
            if predicate(message):
                return message

    return await asyncio.wait_for(loop(), timeout)


async def eventually(predicate, timeout: float = 20.0) -> None:
    """Wait for what happens just after the final state is announced (the login process and container stopping)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


def state_of(url: str) -> str:
    """The state the fake CLI expects after the '#': the URL's state= (2.0.31 screens), else its query (2.1.x)."""
    query = urlsplit(url).query
    return parse_qs(query)["state"][0] if "state=" in query else query


def make_user(name="lou"):
    return User.objects.create_user(name, password="lou password 123")


def login_of(user) -> sessions.LoginSession:
    """The user's latest login in this process, also one that ended."""
    return sessions._sessions[user.pk]


async def start_subscription(comm) -> None:
    """Start a subscription login on the socket and wait until it asks for the code."""
    await comm.send_to(text_data=json.dumps({"type": "start", "method": "subscription"}))
    await until(comm, lambda m: m["type"] == "need_code")


async def waiting_for_code(user) -> WebsocketCommunicator:
    """A login socket of ``user``, connected, whose subscription login waits for the code."""
    comm = communicator(user)
    assert (await comm.connect())[0]
    await until(comm, lambda m: m["type"] == "status")
    await start_subscription(comm)
    return comm


async def run_subscription_login(user, *, wrong_first: bool = False) -> str:
    comm = communicator(user)
    assert (await comm.connect())[0]
    assert (await until(comm, lambda m: m["type"] == "status"))["state"] == "idle"
    await comm.send_to(text_data=json.dumps({"type": "start", "method": "subscription"}))
    url = (await until(comm, lambda m: m["type"] == "url"))["url"]
    assert url.startswith("https://claude.ai/oauth/authorize?") and len(url) > 60
    await until(comm, lambda m: m["type"] == "need_code")
    if wrong_first:
        await comm.send_to(text_data=json.dumps({"type": "code", "code": "abcd#not-the-state"}))
        failed = await until(comm, lambda m: m["type"] == "status" and m["state"] == "error")
        assert "Invalid code" in failed["message"]
        await comm.disconnect()
        return failed["message"]
    await comm.send_to(text_data=json.dumps({"type": "code", "code": f"thecode123#{state_of(url)}"}))
    outputs: list[str] = []

    def saved(message: dict) -> bool:
        if message["type"] == "output":
            outputs.append(message["text"])
        return message["type"] == "saved"

    await until(comm, saved)
    await comm.disconnect()
    assert "token created successfully" in outputs[-1]
    return outputs[-1]
