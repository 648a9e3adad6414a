"""Live events of the secrets app: a connection changed, so the user's settings cards are pushed again.

The channel layer is only a wake-up: a consumer in another process with the in-memory layer never hears it and
re-reads the database on its own poll instead (DESIGN.md, "Log delivery").
"""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)


def settings_group(user_id: int) -> str:
    return f"settings.user.{user_id}"


def send_settings_changed(*, user_id: int, provider: str) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(settings_group(user_id), {"type": "settings.changed", "provider": provider})
    except Exception:  # a lost wake-up only delays the card until the next poll; never fail the write
        logger.warning("could not publish settings change for user %s", user_id, exc_info=True)
