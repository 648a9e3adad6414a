"""Pasted Anthropic API keys and subscription tokens, validated against a fake Anthropic API."""

from datetime import UTC, datetime

import pytest
import time_machine

from secrets_app import anthropic_credentials
from secrets_app.errors import ConnectError
from secrets_app.secret_store import fetch_secret
from tests.fixtures.leaks import track_secret
from tests.secrets_app.conftest import API_KEY

TOKEN = track_secret("sk-ant-oat01-" + "T" * 60 + "Qq")


@pytest.mark.parametrize(
    ("value", "kind", "message"),
    [
        ("", "api_key", "empty"),
        ("sk-ant-api03-short", "api_key", "starts with sk-ant-api03-"),
        ("hello world", "api_key", "not a key"),
        ("x" * 10_000, "api_key", "not a key"),
        ("sk-ant-api03-ü" + "a" * 30, "api_key", "not a key"),
        (API_KEY, "oauth_token", "starts with sk-ant-oat01-"),
        ("sk-ant-api03-" + "W" * 40, "api_key", "Anthropic rejected it (401)"),
    ],
)
def test_pasted_credentials_are_checked(anthropic, value, kind, message):
    with pytest.raises(ConnectError, match=message.replace("(", r"\(").replace(")", r"\)")):
        anthropic_credentials.validate_anthropic_credential(value, kind=kind)


def test_valid_api_key_reaches_the_api_with_the_header(anthropic, alice):
    anthropic_credentials.do_connect_anthropic_credential(owner=alice, value=f"  {API_KEY}\n", kind="api_key")
    assert anthropic.requests[-1].headers["x-api-key"] == API_KEY and anthropic.requests[-1].path == "/v1/models"
    assert fetch_secret(owner=alice, provider="claude", purpose="t", actor="t").value == API_KEY


def test_token_is_sent_as_bearer_and_gets_a_year(anthropic, alice):
    anthropic.expected_token = TOKEN
    secret = anthropic_credentials.do_connect_anthropic_credential(owner=alice, value=TOKEN, kind="oauth_token")
    assert anthropic.requests[-1].headers["authorization"] == f"Bearer {TOKEN}"
    assert 364 <= (secret.expires_at - secret.created_at).days <= 365


def test_network_error_is_clear(settings):
    settings.ANYON_ANTHROPIC_API_URL = "http://127.0.0.1:9"
    with pytest.raises(ConnectError, match="could not be reached"):
        anthropic_credentials.validate_anthropic_credential(API_KEY, kind="api_key")


def test_a_token_made_on_a_leap_day_expires_365_days_later_and_warns_a_week_before(anthropic, alice):
    """The one-year setup-token is counted as 365 days (never past the real anniversary), from a leap day too."""
    from secrets_app.expiry import check_token_expiry

    anthropic.expected_token = TOKEN
    made = datetime(2028, 2, 29, 12, 0, tzinfo=UTC)
    with time_machine.travel(made, tick=False) as clock:
        secret = anthropic_credentials.do_connect_anthropic_credential(owner=alice, value=TOKEN, kind="oauth_token")
        assert secret.expires_at == datetime(2029, 2, 28, 12, 0, tzinfo=UTC)
        clock.move_to(datetime(2029, 2, 21, 11, 59, tzinfo=UTC))  # 7 days and a minute before
        assert check_token_expiry() == "expired 0, expiring 0, invalid 0"
        clock.move_to(datetime(2029, 2, 21, 12, 0, tzinfo=UTC))
        assert check_token_expiry() == "expired 0, expiring 1, invalid 0"
        clock.move_to(datetime(2029, 2, 28, 12, 0, tzinfo=UTC))
        assert check_token_expiry() == "expired 1, expiring 0, invalid 0"
