"""A live view and the channel layer (Redis) going away: the socket's place is given back however the consumer ends,
and a layer that stops answering does not end the socket; the outage is one log line and its end another."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
import redis.exceptions
from channels.db import database_sync_to_async
from channels.layers import InMemoryChannelLayer
from channels.testing import WebsocketCommunicator

from execution.models import Attempt, AttemptStatus
from execution.web import log_tail
from execution.web.consumers import AttemptLogConsumer
from shared import outages
from shared.live import consumer
from shared.live.consumer import open_sockets
from tests.execution.conftest import make_attempt
from tests.fixtures.sockets import signed_in

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _fresh_outages():
    outages._outages.clear()
    yield
    outages._outages.clear()


def use_layer(monkeypatch, layer) -> None:
    """The consumers get ``layer``; the attempt's tail gets none (it polls), so only the consumer meets it."""
    monkeypatch.setattr("channels.consumer.get_channel_layer", lambda alias="default": layer)
    monkeypatch.setattr(consumer, "get_channel_layer", lambda alias="default": layer, raising=False)
    monkeypatch.setattr(log_tail, "get_channel_layer", lambda: None)


async def running_attempt() -> Attempt:
    attempt = await database_sync_to_async(make_attempt)("nina")
    await database_sync_to_async(Attempt.objects.filter(pk=attempt.pk).update)(status=AttemptStatus.RUNNING)
    return attempt


def log_socket(attempt: Attempt) -> WebsocketCommunicator:
    comm = WebsocketCommunicator(AttemptLogConsumer.as_asgi(), f"/ws/attempts/{attempt.pk}/logs/")
    signed_in(comm, attempt.task.owner)
    comm.scope["url_route"] = {"kwargs": {"attempt_id": attempt.pk}}
    return comm


class BrokenLayer(InMemoryChannelLayer):
    """A layer whose receive fails with something that is not an outage: the consumer ends with an error."""

    async def receive(self, channel):
        await asyncio.sleep(0.2)
        raise RuntimeError("a bug in the channel layer")


class FlakyLayer(InMemoryChannelLayer):
    """A layer that answers nothing (Redis down) until ``up()``, and forgets its groups meanwhile (a restart)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = True
        self.failures = 0
        self.joins: list[str] = []

    def up(self) -> None:
        self.down = False
        self.groups.clear()

    def _refuse(self) -> None:
        if self.down:
            self.failures += 1
            raise redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    async def receive(self, channel):
        await asyncio.sleep(0.01)
        self._refuse()
        return await super().receive(channel)

    async def group_add(self, group, channel):
        self._refuse()
        self.joins.append(group)
        await super().group_add(group, channel)

    async def group_discard(self, group, channel):
        self._refuse()
        await super().group_discard(group, channel)


async def test_a_consumer_that_ends_with_an_error_gives_its_place_back(settings, monkeypatch):
    """Before, only a clean close gave the place back: each crashed socket (a Redis read timing out) kept one, and
    after a few the user's next page was refused as "too many open live views"."""
    settings.ANYON_MAX_WEBSOCKETS_PER_USER = 1
    use_layer(monkeypatch, BrokenLayer())
    attempt = await running_attempt()
    for _ in range(3):  # each one would be refused if an earlier one still held the only place
        comm = log_socket(attempt)
        assert (await comm.connect())[0]
        assert json.loads(await comm.receive_from(timeout=5))["type"] == "status"
        assert open_sockets(attempt.task.owner.pk) == 1
        with pytest.raises(RuntimeError, match="a bug in the channel layer"):
            await comm.wait(timeout=5)
        assert open_sockets(attempt.task.owner.pk) == 0


async def test_a_channel_layer_outage_leaves_the_socket_open_and_is_one_line_each_way(settings, monkeypatch, caplog):
    """The socket opens while the layer is down, outlives the outage, and joins its group again once it is back (a
    restarted Redis forgot it), so a log-out elsewhere still closes it."""
    from shared.live import sessions

    monkeypatch.setattr(consumer, "MAX_LAYER_PAUSE_SECONDS", 0.05, raising=False)
    layer = FlakyLayer()
    use_layer(monkeypatch, layer)
    attempt = await running_attempt()
    group = sessions.user_group(attempt.task.owner.pk)
    comm = log_socket(attempt)
    with caplog.at_level(logging.WARNING, logger="anyon.outages"):
        assert (await comm.connect())[0]
        assert json.loads(await comm.receive_from(timeout=5))["type"] == "status"
        while layer.failures < 5:
            await asyncio.sleep(0.05)
        await comm.send_to(text_data=json.dumps({"type": "ping"}))  # still served during the outage
        while json.loads(await comm.receive_from(timeout=5))["type"] != "pong":
            pass
        layer.up()
        for _ in range(100):
            if group in layer.joins:
                break
            await asyncio.sleep(0.05)
        assert open_sockets(attempt.task.owner.pk) == 1
        owner = attempt.task.owner
        await database_sync_to_async(type(owner).objects.filter(pk=owner.pk).update)(is_active=False)
        await layer.group_send(group, {"type": "session.ended"})  # the user was deactivated: its sockets close
        while (output := await comm.receive_output(timeout=5))["type"] != "websocket.close":
            pass
        assert output["code"] == sessions.CLOSE_SIGNED_OUT
        await comm.disconnect()
    assert open_sockets(attempt.task.owner.pk) == 0
    lines = [r.getMessage() for r in caplog.records if r.name == "anyon.outages"]
    assert len(lines) == 2, lines
    assert lines[0].startswith("redis unreachable (live view: ConnectionError: Error 111")
    assert lines[1].startswith("redis reachable again after")
    assert not any(r.exc_info for r in caplog.records)


def test_the_copied_consumer_call_matches_the_installed_channels():
    import hashlib
    import inspect

    from channels.consumer import AsyncConsumer

    installed = hashlib.sha256(inspect.getsource(AsyncConsumer.__call__).encode()).hexdigest()
    assert installed == consumer.UPSTREAM_CALL_SHA256, "channels changed AsyncConsumer.__call__: re-check JsonConsumer"


async def test_a_database_outage_while_connecting_closes_the_socket_with_one_line(monkeypatch, caplog):
    """The page then reconnects later; the web server's log has one line, not a traceback per try."""
    from django.db import OperationalError

    from execution.attempts import selectors

    use_layer(monkeypatch, InMemoryChannelLayer())
    attempt = await running_attempt()

    def refused(**kwargs):
        raise OperationalError('connection to server at "127.0.0.1", port 5432 failed: Connection refused')

    monkeypatch.setattr(selectors, "may_view_attempt", refused)
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            comm = log_socket(attempt)
            connected, code = await comm.connect(timeout=5)
            assert not connected and code == consumer.SERVER_AWAY
            await comm.wait(timeout=5)
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.name for r in lines] == ["anyon.outages"] and not lines[0].exc_info
    assert lines[0].getMessage().startswith("database unreachable (live view: OperationalError")
