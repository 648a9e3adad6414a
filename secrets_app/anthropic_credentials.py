"""Connecting Claude with a pasted Anthropic API key or subscription token: checked for shape, then by one
authenticated request to Anthropic's API, then stored."""

from __future__ import annotations

import re
from datetime import timedelta

import requests
from django.conf import settings
from django.utils import timezone

from secrets_app.errors import ConnectError
from secrets_app.models import Kind, Provider
from secrets_app.secret_store import do_store_secret
from shared.token_patterns import ANTHROPIC_API_KEY, CLAUDE_OAUTH_TOKEN, whole

OAUTH_TOKEN = re.compile(CLAUDE_OAUTH_TOKEN)
API_KEY = whole(ANTHROPIC_API_KEY)
TOKEN_LIFETIME = timedelta(days=365)


def validate_anthropic_credential(value: str, *, kind: str) -> str:
    """Check shape, then a minimal authenticated request (``GET /v1/models``). Returns the clean value."""
    value = (value or "").strip()
    if not value:
        raise ConnectError("Paste the key: the field is empty.")
    if len(value) > 500 or not value.isascii() or any(c.isspace() for c in value):
        raise ConnectError("That is not a key: keys are one line of letters, digits, '-' and '_'.")
    if kind == Kind.API_KEY and not API_KEY.match(value):
        raise ConnectError("An Anthropic API key starts with sk-ant-api03-. Copy it again from the Console.")
    if kind == Kind.OAUTH_TOKEN and not OAUTH_TOKEN.fullmatch(value):
        raise ConnectError("A Claude subscription token starts with sk-ant-oat01- (made by `claude setup-token`).")
    headers = {"anthropic-version": "2023-06-01"}
    if kind == Kind.API_KEY:
        headers["x-api-key"] = value
    else:
        headers["Authorization"] = f"Bearer {value}"
        headers["anthropic-beta"] = "oauth-2025-04-20"
    try:
        response = requests.get(
            f"{settings.ANYON_ANTHROPIC_API_URL.rstrip('/')}/v1/models",
            headers=headers,
            timeout=settings.ANYON_HTTP_TIMEOUT,
        )
    except requests.RequestException as exc:
        raise ConnectError(f"Anthropic's API could not be reached ({type(exc).__name__}). Try again later.") from exc
    if response.status_code in (401, 403):
        raise ConnectError(f"Anthropic rejected it ({response.status_code}): it is wrong, revoked or expired.")
    if response.status_code >= 400:
        raise ConnectError(f"Anthropic's API answered {response.status_code}; try again later.")
    return value


def do_connect_anthropic_credential(*, owner, value: str, kind: str):
    value = validate_anthropic_credential(value, kind=kind)
    expires = timezone.now() + TOKEN_LIFETIME if kind == Kind.OAUTH_TOKEN else None
    return do_store_secret(owner=owner, provider=Provider.CLAUDE, kind=kind, value=value, expires_at=expires)
