"""The live groups of the owner's environment pages, below both the attempts and the environments that wake them:
an attempt's status or setup run, a snapshot taken, used or dropped, an environment saved (docs/ARCHITECTURE.md,
"Live updates")."""

from __future__ import annotations

from shared.live.events import wake_group

ENVIRONMENT_CHANGED = "environment.changed"


def environments_group(user_id: int) -> str:
    return f"environments.user.{user_id}"


def wake_environment_pages(owner_id: int, **event) -> None:
    """Tell the owner's open environment pages that something they show may have changed (on commit, best effort:
    the pages poll too)."""
    wake_group(environments_group(owner_id), {"type": ENVIRONMENT_CHANGED, **event})
