"""The channel layer of the embedded default: Channels' in-memory layer, plus group messages between the
processes of this host (the web server and the worker cluster) over :mod:`shared.wakeups.sockets`.

With it, a log batch written by a worker wakes the web process's live viewers at once instead of at their next
database poll. Only group messages cross processes (what :func:`shared.live.events.wake_group` sends); a message
that does not fit a datagram or is not JSON stays local, and the receivers' poll covers it. A datagram from another
process is accepted only as a wake-up (a type of ``WAKE_TYPES`` with plain values): any process of the service
user can write to the sockets, and what it writes must never become anything but a hint to look at the database.
With ``REDIS_URL`` set, ``channels_redis`` is used instead and this module is not involved.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os

from channels.layers import InMemoryChannelLayer

from shared.wakeups import WAKE_TYPES
from shared.wakeups import sockets as wakeups

logger = logging.getLogger(__name__)

TOPIC = "layer"


class HostChannelLayer(InMemoryChannelLayer):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._listener: wakeups.Listener | None = None
        self._reader_loop: asyncio.AbstractEventLoop | None = None
        self._deliveries: set[asyncio.Task] = set()

    async def group_add(self, group: str, channel: str) -> None:
        await super().group_add(group, channel)
        self._listen(asyncio.get_running_loop())

    async def group_send(self, group: str, message: dict) -> None:
        await super().group_send(group, message)
        self._send_to_other_processes(group, message)

    def group_send_from_sync(self, group: str, message: dict) -> bool:
        """``group_send`` from a thread without an event loop (an action's on-commit wake-up), without making one:
        ``async_to_sync`` started a thread and an event loop per wake-up, 13 % of a worker's Python with ten
        attempts at once. Other processes get the datagram at once; this process's own members, if it has any,
        get the message on the event loop that serves them. False when that loop is not known (the caller then
        falls back to ``async_to_sync``)."""
        if self.groups:  # members in this process (the web server): delivered on their loop
            loop = self._reader_loop
            if loop is None or loop.is_closed() or self._listener is None or self._listener.pid != os.getpid():
                return False
            loop.call_soon_threadsafe(self._deliver_here, group, message)
        self._send_to_other_processes(group, message)
        return True

    def _send_to_other_processes(self, group: str, message: dict) -> None:
        try:
            payload = json.dumps([group, message]).encode()
        except (TypeError, ValueError):
            logger.debug("group message to %s is not JSON: kept in this process", group)
            return
        own = self._listener.path if self._listener is not None and self._listener.pid == os.getpid() else None
        wakeups.send(TOPIC, payload, skip=own)

    def _deliver_here(self, group: str, message: dict) -> None:
        task = self._reader_loop.create_task(InMemoryChannelLayer.group_send(self, group, message))
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    # --- receiving ---------------------------------------------------------------------------------------------
    def _listen(self, loop: asyncio.AbstractEventLoop) -> None:
        """Receive other processes' group messages on ``loop`` (bound on the first group_add of a process;
        moved when a later event loop takes over, as in tests that run one loop per test)."""
        if self._listener is None or self._listener.pid != os.getpid():
            self._listener = wakeups.listen(TOPIC)
            self._reader_loop = None
            if self._listener is None:
                return
        if self._reader_loop is loop:
            return
        if self._reader_loop is not None and not self._reader_loop.is_closed():
            self._reader_loop.remove_reader(self._listener.fileno())
        loop.add_reader(self._listener.fileno(), self._on_readable)
        self._reader_loop = loop

    def _on_readable(self) -> None:
        for data in self._listener.receive_all():
            try:
                group, message = json.loads(data)
                self.require_valid_group_name(group)
                if not isinstance(message, dict) or message.get("type") not in WAKE_TYPES:
                    raise TypeError("not a wake-up")
                if not all(isinstance(v, str | int | float | bool | None) for v in message.values()):
                    raise TypeError("a wake-up carries only plain values")
            except (ValueError, TypeError) as exc:
                logger.debug("ignoring a malformed wake-up: %s", exc)
                continue
            self._deliver_here(group, message)
