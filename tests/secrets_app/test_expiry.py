from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core import mail
from django.utils import timezone

from secrets_app.errors import SecretExpired
from secrets_app.expiry import check_token_expiry
from secrets_app.models import Secret, SecretState
from secrets_app.secret_store import do_store_secret, fetch_secret
from secrets_app.selectors import token_notices
from shared.models import Alert
from tests.fakes.github import classic_token
from tests.fixtures.leaks import track_secret


def test_daily_check_marks_warns_and_revalidates(github, alice):
    alice.email = "alice@example.com"
    alice.save()
    now = timezone.now()
    expired = do_store_secret(
        owner=alice, provider="claude", kind="oauth_token", value=track_secret("sk-ant-oat01-" + "e" * 40),
        expires_at=now - timedelta(days=1),
    )  # fmt: skip
    soon_token = github.add_token(classic_token())
    soon = do_store_secret(
        owner=alice, provider="github", kind="pat", value=soon_token, expires_at=now + timedelta(days=2)
    )
    revoked_on_github = do_store_secret(owner=alice, provider="github", kind="oauth_token", value=classic_token("gho"))
    summary = check_token_expiry()
    assert summary == "expired 1, expiring 1, invalid 1"
    assert Secret.objects.get(pk=expired.pk).state == SecretState.EXPIRED
    assert Secret.objects.get(pk=soon.pk).state == SecretState.ACTIVE
    assert Secret.objects.get(pk=revoked_on_github.pk).state == SecretState.INVALID
    kinds = set(Alert.objects.values_list("kind", flat=True))
    assert {"token_expired", "token_expiring"} <= kinds
    subjects = sorted(m.subject for m in mail.outbox)
    assert subjects == ["Your Claude connection expired", "Your GitHub connection expires in 2 day(s)"]
    for message in mail.outbox:
        assert soon_token not in message.body


def test_a_token_expiring_just_after_midnight_at_a_month_end_is_expiring_then_expired(alice):
    """The daily check, the banner and a run's fetch agree on the instant, across midnight UTC at a month end."""
    expires = datetime(2027, 2, 1, 0, 0, 5, tzinfo=UTC)
    with time_machine.travel(datetime(2027, 1, 31, 23, 59, 50, tzinfo=UTC), tick=False) as clock:
        secret = do_store_secret(
            owner=alice, provider="claude", kind="oauth_token", value=track_secret("sk-ant-oat01-" + "m" * 40),
            expires_at=expires,
        )  # fmt: skip
        assert check_token_expiry() == "expired 0, expiring 1, invalid 0"
        [notice] = token_notices(owner=alice)
        assert "expires in 1 day(s) (2027-02-01)" in notice["text"]
        assert Alert.objects.get(kind="token_expiring").message.endswith("expires in 1 day(s)")
        clock.shift(timedelta(seconds=15))
        with pytest.raises(SecretExpired, match="expired on 2027-02-01"):
            fetch_secret(owner=alice, provider="claude", purpose="t", actor="t")
        assert Secret.objects.get(pk=secret.pk).state == SecretState.EXPIRED


def test_dates_in_messages_are_the_sites_days_like_the_card(client, alice, settings):
    settings.TIME_ZONE = "America/Los_Angeles"
    with time_machine.travel(datetime(2027, 2, 26, 20, 0, tzinfo=UTC), tick=False):  # the 26th, 12:00 there
        do_store_secret(
            owner=alice, provider="claude", kind="oauth_token", value=track_secret("sk-ant-oat01-" + "z" * 40),
            expires_at=datetime(2027, 3, 1, 3, 0, tzinfo=UTC),  # the 28th, 19:00 there
        )  # fmt: skip
        client.force_login(alice)  # a session of that day
        html = client.get("/settings/").content.decode()
    assert "expires in 2 day(s) (2027-02-28)" in html  # the banner
    assert "<dt>Expires</dt><dd>2027-02-28 <strong>(in 2 days)</strong>" in html  # the card
    assert "2027-03-01" not in html
