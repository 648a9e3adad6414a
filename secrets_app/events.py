"""Live events of the secrets app: a connection changed, so the user's settings cards are pushed again.

The channel layer is only a wake-up: a consumer in another process with the in-memory layer never hears it and
re-reads the database on its own poll instead (docs/ARCHITECTURE.md, "Live updates").
"""

from __future__ import annotations

from shared.live.events import wake_group


def settings_group(user_id: int) -> str:
    return f"settings.user.{user_id}"


def wake_settings_viewers(*, user_id: int, provider: str) -> None:
    wake_group(settings_group(user_id), {"type": "settings.changed", "provider": provider})
