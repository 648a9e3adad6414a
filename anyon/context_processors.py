"""Notices shown on every page (the banner under the navigation)."""

from __future__ import annotations

import time

from anyon.health import check_docker

_DOCKER_CACHE: dict[str, object] = {"at": 0.0, "check": None}
_DOCKER_CACHE_SECONDS = 15


def _docker_check():
    """The Docker check, cached briefly so that a page view does not ping the engine every time."""
    now = time.monotonic()
    if _DOCKER_CACHE["check"] is None or now - float(_DOCKER_CACHE["at"]) > _DOCKER_CACHE_SECONDS:
        _DOCKER_CACHE.update(at=now, check=check_docker(timeout=2))
    return _DOCKER_CACHE["check"]


def system_notices(request) -> dict:
    if not getattr(request, "user", None) or not request.user.is_authenticated:
        return {"system_notices": []}
    notices = []
    docker = _docker_check()
    if docker.failed:
        notices.append({"level": "error", "text": f"Docker engine: {docker.detail}.", "fix": docker.fix})
    from secrets_app.selectors import token_notices

    notices.extend(token_notices(owner=request.user))
    return {"system_notices": notices}
