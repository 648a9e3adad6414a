"""Best-effort wake-ups over the channel layer, shared by every app's live views.

A wake-up only makes a consumer look at the database sooner; it is never the only path of the data (consumers poll
the database too), so failures here are logged at debug level and swallowed.
"""

from __future__ import annotations

import asyncio
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from shared.outages import is_connection_error, outage
from shared.wakeups import WAKE_TYPES

logger = logging.getLogger(__name__)


def wake_group(group: str, event: dict) -> None:
    """Wake the group's consumers once the current transaction commits (at once outside one): a consumer woken
    earlier would look for rows it cannot see yet."""
    if event.get("type") not in WAKE_TYPES:
        raise ValueError(f"not a wake-up type: {event.get('type')!r}")
    transaction.on_commit(lambda: _send(group, event))


def _send(group: str, event: dict) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:  # called from inside an event loop's thread: cannot block on it; the consumers' poll covers this
        logger.debug("skipping wake-up of %s from inside an event loop", group)
        return
    from_sync = getattr(layer, "group_send_from_sync", None)  # the embedded layer's, without an event loop
    try:
        if from_sync is not None and from_sync(group, event):
            return
    except Exception:
        logger.debug("wake-up of %s not delivered", group, exc_info=True)
        return
    redis = outage("redis")
    if not redis.should_try():  # Redis is away: a worker's log batches do not wait on refused connections
        return
    try:
        async_to_sync(layer.group_send)(group, event)
    except Exception as exc:
        if is_connection_error(exc):
            redis.failed("wake-ups", exc)
        else:
            logger.debug("wake-up of %s not delivered", group, exc_info=True)
    else:
        redis.answered()
