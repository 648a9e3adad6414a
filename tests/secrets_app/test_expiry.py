from datetime import timedelta

from django.core import mail
from django.utils import timezone

from secrets_app.expiry import check_token_expiry
from secrets_app.models import Secret, SecretState
from secrets_app.secret_store import do_store_secret
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
    assert subjects == ["Your Claude connection expired", "Your GitHub connection expires in 1 day(s)"]
    for message in mail.outbox:
        assert soon_token not in message.body
