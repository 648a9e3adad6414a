"""The base of every websocket consumer: JSON out, client frames checked before anything reads them, the
per-user socket limit and the session guard (docs/ARCHITECTURE.md, "Live updates"). Messages out are encoded with
orjson: the standard encoder was the web process's hottest spot for a busy run (docs/PERFORMANCE.md)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import weakref
from collections.abc import Awaitable, Callable

import orjson
from channels.db import aclose_old_connections, database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from channels.utils import await_many_dispatch
from django.conf import settings
from django.utils.crypto import constant_time_compare

from shared.live import sessions
from shared.outages import is_connection_error, outage, part_of

#: The admitted consumers of each user id in this process (consumers of one process share its event loop).
_open_sockets: dict[int, weakref.WeakSet[JsonConsumer]] = {}
TOO_MANY_SOCKETS = 4429
#: Close code of a socket whose consumer could not reach the database or Redis: the page reconnects later.
SERVER_AWAY = 1011
#: SHA-256 of the source of channels' ``AsyncConsumer.__call__`` that :meth:`JsonConsumer.__call__` copies (4.3.2).
UPSTREAM_CALL_SHA256 = "e52238720872dbc3f854519bc971aa7eb41553e63c8729081549ce42465ee419"
#: Longest pause between two tries of a channel layer that does not answer.
MAX_LAYER_PAUSE_SECONDS = 10.0


def open_sockets(user_id: int) -> int:
    return len(_open_sockets.get(user_id, ()))


def encode_json(payload: dict) -> str:
    """One outgoing message as text (orjson; a lone surrogate, which orjson refuses, goes through the standard
    encoder, which escapes it)."""
    try:
        return orjson.dumps(payload).decode()
    except TypeError:
        return json.dumps(payload)


class JsonConsumer(AsyncWebsocketConsumer):
    #: Largest client frame accepted, in characters; consumers that only listen may lower it.
    max_frame = 8192
    follower: asyncio.Task | None = None
    session_guard: asyncio.Task | None = None
    signed_out = False

    async def __call__(self, scope, receive, send) -> None:
        """``AsyncConsumer.__call__`` (channels 4.3) with three changes: the channel layer's receive survives an
        outage of the layer (:meth:`_layer_receive`), a connection error while handling a message closes the socket
        with one log line instead of a traceback, and the socket's place is given back however the consumer ends.
        ``UPSTREAM_CALL_SHA256`` pins the copied method: a test compares it with the installed channels."""
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.base_send = send
        sources = [receive]
        if self.channel_layer is not None:
            self.channel_name = await self.channel_layer.new_channel()
            self.channel_receive = self._layer_receive
            sources.append(self._layer_receive)
        try:
            await await_many_dispatch(sources, self.dispatch)
        except StopConsumer:
            pass
        except Exception as exc:  # the database (or Redis) away while handling a message: a line, then close
            if not is_connection_error(exc):
                raise
            outage(part_of(exc)).failed("live view", exc)
            with contextlib.suppress(Exception):
                await self.base_send({"type": "websocket.close", "code": SERVER_AWAY})
        finally:
            self._release_place()
            for task in (self.follower, self.session_guard):
                if task is not None:
                    task.cancel()

    async def _layer_receive(self) -> dict:
        """The channel's next message; while the layer does not answer, wait (longer each time) and try again."""
        pause = 0.0
        while True:
            try:
                message = await self.channel_layer.receive(self.channel_name)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not is_connection_error(exc):
                    raise
                outage("redis").failed("live view", exc)
                pause = min(max(pause * 2, 0.5), MAX_LAYER_PAUSE_SECONDS)
                await asyncio.sleep(pause)
                if await self._join_groups():
                    outage("redis").answered()
                continue
            return message

    async def _join(self, group: str) -> None:
        """Join ``group``; if the layer does not answer, the receive joins it once the layer is back."""
        self.groups.append(group)
        try:
            await self.channel_layer.group_add(group, self.channel_name)
        except Exception as exc:
            if not is_connection_error(exc):
                raise
            outage("redis").failed("live view", exc)

    async def _join_groups(self) -> bool:
        """Join the groups again after an outage; whether the layer answered."""
        for group in self.groups:
            try:
                await self.channel_layer.group_add(group, self.channel_name)
            except Exception as exc:
                if not is_connection_error(exc):
                    raise
                return False  # still away: the next receive tries again
        return True

    async def accept(self, subprotocol=None, headers=None) -> None:
        """Accept, and for a signed-in user join the user's group and re-check the session periodically."""
        user = self.scope.get("user")
        if user is not None and user.is_authenticated:
            self.session_user_id = user.pk
            self.session_key = getattr(self.scope.get("session"), "session_key", None) or ""
            await self._join(sessions.user_group(user.pk))
            self.session_guard = asyncio.create_task(self._guard_session())
        await super().accept(subprotocol, headers)

    async def _guard_session(self) -> None:
        while True:
            await asyncio.sleep(settings.ANYON_LIVE_SESSION_CHECK_SECONDS)
            try:
                valid = await self._session_still_valid()
            except Exception as exc:  # the database away: not known now; the next check decides
                if not is_connection_error(exc):
                    raise
                outage(part_of(exc)).failed("session check", exc)
                continue
            if not valid:
                await self.sign_out()
                return

    async def _session_still_valid(self) -> bool:
        return await database_sync_to_async(sessions.still_signed_in)(
            user_id=self.session_user_id, session_key=self.session_key
        )

    async def session_ended(self, event: dict) -> None:
        """The user logged out somewhere or changed: close if it was this socket's session, else re-check now."""
        digest = event.get("session")
        if self.session_key and isinstance(digest, str) and digest:
            if constant_time_compare(digest, sessions.session_digest(self.session_key)):
                await self.sign_out()
            return  # another session of the same user logged out: this one is unaffected
        if not await self._session_still_valid():
            await self.sign_out()

    async def sign_out(self) -> None:
        """Stop following and close with 4401; the client's page shows the sign-in form on its next load."""
        if self.signed_out:
            return
        self.signed_out = True
        current = asyncio.current_task()
        for task in (self.follower, self.session_guard):
            if task is not None and task is not current:
                task.cancel()
        await self.close(code=sessions.CLOSE_SIGNED_OUT)

    _counted_user: int | None = None

    async def admit(self) -> bool:
        """Accept the socket if its user has room for one more (``ANYON_MAX_WEBSOCKETS_PER_USER``); otherwise
        accept only to say why, and close it. Returns whether it was admitted."""
        user_id = self.scope["user"].pk
        limit = settings.ANYON_MAX_WEBSOCKETS_PER_USER
        if limit > 0 and open_sockets(user_id) >= limit:
            await self.accept()
            await self.send_error(
                f"Too many open live views: at most {limit} per user. Close some tabs, then reload this page."
            )
            await self.close(code=TOO_MANY_SOCKETS)
            return False
        _open_sockets.setdefault(user_id, weakref.WeakSet()).add(self)
        self._counted_user = user_id
        await self.accept()
        return True

    def _release_place(self) -> None:
        if self._counted_user is None:
            return
        held = _open_sockets.get(self._counted_user)
        if held is not None:
            held.discard(self)
            if not held:
                del _open_sockets[self._counted_user]
        self._counted_user = None

    async def websocket_disconnect(self, message) -> None:
        """As channels' own, but leaving the groups cannot fail the close: a channel the layer still lists only
        collects messages that expire unread."""
        self._release_place()  # at once, not only when the consumer's task ends
        for group in self.groups:
            try:
                await self.channel_layer.group_discard(group, self.channel_name)
            except Exception as exc:
                if not is_connection_error(exc):
                    raise
                outage("redis").failed("live view", exc)
                break
        await self.disconnect(message["code"])
        await aclose_old_connections()
        raise StopConsumer()

    async def accept_and_follow(self, group: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Join ``group`` (channels leaves it on disconnect), accept, and run ``loop`` until the socket closes.
        A handler of the group's messages (:func:`shared.live.events.wake_group`) calls ``woken``."""
        self.wake = asyncio.Event()
        await self._join(group)
        if await self.admit():
            self.follower = asyncio.create_task(loop())

    def woken(self) -> None:
        self.wake.set()

    async def wait_for_wakeup(self, timeout: float) -> None:
        """Until a group message or ``timeout`` seconds (the poll that covers a wake-up that never came)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), timeout=timeout)
        self.wake.clear()

    async def disconnect(self, code: int) -> None:
        for task in (self.follower, self.session_guard):
            if task is not None:
                task.cancel()

    async def send_json(self, payload: dict) -> None:
        await self.send(text_data=encode_json(payload))

    async def send_error(self, error: str) -> None:
        await self.send_json({"type": "error", "error": error})

    async def parse(self, text_data: str | None, bytes_data: bytes | None) -> dict | None:
        """The client's message, or None after telling the client what was wrong with it."""
        if bytes_data is not None or text_data is None:
            await self.send_error("binary frames are not accepted")
            return None
        if len(text_data) > self.max_frame:
            await self.send_error("message too large")
            return None
        try:
            message = json.loads(text_data)
        except ValueError:
            await self.send_error("malformed JSON")
            return None
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            await self.send_error("unknown message: a message is an object with a type")
            return None
        return message
