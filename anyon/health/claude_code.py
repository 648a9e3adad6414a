"""The Claude Code release in the runtime image, against the npm registry's latest."""

from __future__ import annotations

import contextlib

from django.conf import settings

from anyon.health.checks import OK, WARN, Check, version_key

CLAUDE_CODE_LABEL = "io.anyon.versions.claude-code"
LATEST_CACHE_SECONDS = 6 * 3600


def latest_claude_code_release() -> str:
    """The registry's latest Claude Code release ("" when the registry cannot be reached), cached for hours. A cache
    that does not answer (Redis or the database away) makes it "" too: the cache's own check says why."""
    from django.core.cache import cache

    key = "anyon:claude-code-latest"
    try:
        cached = cache.get(key)
    except Exception:
        return ""
    if cached is not None:
        return cached
    import requests

    url = f"{settings.ANYON_NPM_REGISTRY_URL.rstrip('/')}/@anthropic-ai%2Fclaude-code/latest"
    try:
        response = requests.get(url, timeout=3, headers={"Accept": "application/json"})
        latest = str(response.json().get("version", "")) if response.status_code == 200 else ""
    except (requests.RequestException, ValueError):
        latest = ""
    with contextlib.suppress(Exception):
        cache.set(key, latest, LATEST_CACHE_SECONDS if latest else 300)
    return latest


def check_claude_cli(timeout: int = 3) -> Check:
    """The Claude Code release inside the configured image (its build label), against the registry's latest."""
    from shared.docker.client import get_docker_client

    name = "claude code"
    try:
        labels = get_docker_client(timeout=timeout).images.get(settings.ANYON_CLOUD_IMAGE).labels or {}
    except Exception as exc:
        return Check(name, WARN, f"cannot read the runtime image ({type(exc).__name__})", required=False)
    current = labels.get(CLAUDE_CODE_LABEL, "")
    if not current:
        return Check(name, WARN, f"{settings.ANYON_CLOUD_IMAGE} names no Claude Code version", required=False)
    if not settings.ANYON_CLAUDE_CODE_VERSION_CHECK:
        return Check(name, OK, f"{current} in the image (release check off)", required=False)
    latest = latest_claude_code_release()
    if not latest:
        detail = f"{current} in the image; the npm registry could not be reached: a newer release is not known"
        return Check(name, WARN, detail, required=False)
    if version_key(latest) > version_key(current):
        return Check(
            name, WARN, f"{current} in the image; {latest} is released", "make image CLAUDE_CODE_VERSION=" + latest,
            required=False,
        )  # fmt: skip
    return Check(name, OK, f"{current} in the image, the latest release", required=False)
