"""The Claude and GitHub card partials in every state, compared with reviewed HTML snapshots.

A changed card fails here until its snapshot is reviewed and refreshed with ``UPDATE_SNAPSHOTS=1 make test``.
Screenshots of the states come from the browser tests (test-artifacts/claude-*.png).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.template.loader import render_to_string

from secrets_app import selectors
from secrets_app.models import Secret
from secrets_app.selectors import ProviderStatus

SNAPSHOTS = Path(__file__).parent / "snapshots"
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def secret(kind: str, *, state: str = "active", expires: timedelta | None = None, provider: str = "claude", **extra):
    return Secret(
        pk=42,
        owner_id=1,
        provider=provider,
        kind=kind,
        fingerprint="x9Zq",
        state=state,
        created_at=NOW - timedelta(days=30),
        updated_at=NOW - timedelta(days=1),
        expires_at=NOW + expires if expires is not None else None,
        **extra,
    )


class _Login:
    id = "abc"


CLAUDE_STATES = {
    "not_connected": (ProviderStatus("claude", "not_connected", None, [], None), None),
    "connected_subscription": (
        ProviderStatus("claude", "connected", secret("oauth_token", expires=timedelta(days=300)), [], None),
        None,
    ),
    "connected_api_key": (ProviderStatus("claude", "connected", secret("api_key"), [], None), None),
    "expiring": (
        ProviderStatus("claude", "expiring", secret("oauth_token", expires=timedelta(days=3, hours=1)), [], None),
        None,
    ),
    "expired": (
        ProviderStatus(
            "claude", "expired", None, [], secret("oauth_token", state="expired", state_reason="Claude rejected it")
        ),
        None,
    ),
    "invalid": (ProviderStatus("claude", "invalid", None, [], secret("api_key", state="invalid")), None),
    "in_progress": (ProviderStatus("claude", "not_connected", None, [], None), _Login()),
}

GITHUB_STATES = {
    "not_connected": ProviderStatus("github", "not_connected", None, [], None),
    "connected": ProviderStatus(
        "github",
        "connected",
        secret("pat", provider="github", account_login="octo", scopes=["repo"], last_validated_at=NOW),
        [],
        None,
    ),
    "expiring": ProviderStatus(
        "github",
        "expiring",
        secret("pat", provider="github", account_login="octo", expires=timedelta(days=2)),
        [],
        None,
    ),
    "invalid": ProviderStatus("github", "invalid", None, [], secret("pat", provider="github", state="invalid")),
}


def check(name: str, html: str) -> None:
    path = SNAPSHOTS / f"{name}.html"
    normalized = "\n".join(line.rstrip() for line in html.strip().splitlines() if line.strip()) + "\n"
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOTS.mkdir(exist_ok=True)
        path.write_text(normalized)
    assert path.exists(), f"no reviewed snapshot {path.name}: run with UPDATE_SNAPSHOTS=1 and review it"
    assert normalized == path.read_text(), f"{path.name} changed: review, then UPDATE_SNAPSHOTS=1"


@pytest.fixture(autouse=True)
def frozen_now(monkeypatch):
    monkeypatch.setattr(selectors.timezone, "now", lambda: NOW)


@pytest.mark.parametrize("state", sorted(CLAUDE_STATES))
def test_claude_card(state):
    status, login = CLAUDE_STATES[state]
    html = render_to_string(
        "secrets_app/cards/claude.html", {"claude": status, "claude_login": login, "csrf_token": "T"}
    )
    check(f"claude_{state}", html)


@pytest.mark.parametrize("state", sorted(GITHUB_STATES))
def test_github_card(state):
    from secrets_app.forms import PersonalAccessTokenForm

    context = {
        "github": GITHUB_STATES[state], "pat_form": PersonalAccessTokenForm(), "csrf_token": "T",
        "device_flow_enabled": True,
    }  # fmt: skip
    check(f"github_{state}", render_to_string("secrets_app/cards/github.html", context))


def test_github_card_without_the_device_flow():
    """Signing in with GitHub not set up: no button for it, the token form open, the problem text without it."""
    from secrets_app.forms import PersonalAccessTokenForm

    for state in ("not_connected", "invalid"):
        context = {"github": GITHUB_STATES[state], "pat_form": PersonalAccessTokenForm(), "csrf_token": "T"}
        html = render_to_string("secrets_app/cards/github.html", context)
        assert "Sign in with GitHub" not in html and "sign in with GitHub" not in html
        assert "<details open" in html


def test_states_are_distinct():
    """Every state renders differently (a snapshot that equals another one would hide a missing branch)."""
    texts = [p.read_text() for p in SNAPSHOTS.glob("claude_*.html")]
    assert len(texts) == len(CLAUDE_STATES) == len(set(texts))
