"""Live events of the secrets app: the user's settings cards are pushed again (docs/ARCHITECTURE.md, "Live
updates")."""

from __future__ import annotations

from shared.live.events import wake_group


def settings_group(user_id: int) -> str:
    return f"settings.user.{user_id}"


def wake_settings_viewers(*, user_id: int, provider: str) -> None:
    wake_group(settings_group(user_id), {"type": "settings.changed", "provider": provider})
