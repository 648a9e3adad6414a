from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from secrets_app.errors import SecretExpired, SecretMissing, SecretUndecryptable
from secrets_app.models import AccessOutcome, Kind, Provider, Secret, SecretAccess, SecretState
from secrets_app.secret_store import do_revoke_secret, do_store_secret, fetch_secret
from tests.fakes.github import classic_token
from tests.fixtures.leaks import track_secret

KINDS = [
    (Provider.GITHUB, Kind.OAUTH_TOKEN, lambda: classic_token("gho")),
    (Provider.GITHUB, Kind.PAT, classic_token),
    (Provider.CLAUDE, Kind.OAUTH_TOKEN, lambda: track_secret("sk-ant-oat01-" + "Q" * 30 + "x1y2")),
    (Provider.CLAUDE, Kind.API_KEY, lambda: track_secret("sk-ant-api03-" + "Z" * 30 + "k9k9")),
]


def raw_column(secret_id: int) -> bytes:
    with connection.cursor() as cursor:
        cursor.execute("SELECT value FROM secrets_app_secret WHERE id = %s", [secret_id])
        return bytes(cursor.fetchone()[0])


@pytest.mark.parametrize(("provider", "kind", "make"), KINDS)
def test_round_trip_and_ciphertext_at_rest(alice, provider, kind, make):
    value = make()
    secret = do_store_secret(owner=alice, provider=provider, kind=kind, value=value)
    assert secret.fingerprint == value[-4:]
    raw = raw_column(secret.pk)
    assert value.encode() not in raw and value[-12:].encode() not in raw
    fetched = fetch_secret(owner=alice, provider=provider, kinds=[kind], purpose="test", actor="alice", attempt_id=7)
    assert fetched.value == value and fetched.kind == kind
    assert value not in repr(fetched)
    access = SecretAccess.objects.get(secret=secret)
    assert (access.outcome, access.purpose, access.attempt_id, access.actor) == ("success", "test", 7, "alice")


def test_one_active_secret_per_kind_new_one_revokes_old(alice):
    first_value = classic_token()
    first = do_store_secret(owner=alice, provider="github", kind="pat", value=first_value)
    first_ciphertext = raw_column(first.pk)
    second_value = classic_token()
    second = do_store_secret(owner=alice, provider="github", kind="pat", value=second_value)
    first.refresh_from_db()
    assert first.state == SecretState.REVOKED and second.state == SecretState.ACTIVE
    # The replaced credential's ciphertext is gone, as after a revoke: nothing left that a key could open.
    assert first.value == "" and raw_column(first.pk) != first_ciphertext
    assert fetch_secret(owner=alice, provider="github", purpose="t", actor="a").value == second_value
    with pytest.raises(IntegrityError), transaction.atomic():
        Secret.objects.create(owner=alice, provider="github", kind="pat", value="x", fingerprint="")


def test_pat_takes_precedence_over_oauth(alice):
    do_store_secret(owner=alice, provider="github", kind="oauth_token", value=classic_token("gho"))
    pat = classic_token()
    do_store_secret(owner=alice, provider="github", kind="pat", value=pat)
    got = fetch_secret(owner=alice, provider="github", kinds=("pat", "oauth_token"), purpose="clone", actor="worker")
    assert got.value == pat


def test_missing_is_recorded(alice):
    with pytest.raises(SecretMissing, match="No github credential"):
        fetch_secret(owner=alice, provider="github", purpose="clone", actor="worker", attempt_id=3)
    access = SecretAccess.objects.get()
    assert access.outcome == AccessOutcome.MISSING and access.secret is None and access.attempt_id == 3


def test_expired_is_recorded_and_marked(alice):
    secret = do_store_secret(
        owner=alice,
        provider="github",
        kind="pat",
        value=classic_token(),
        expires_at=timezone.now() - timedelta(minutes=1),
    )
    with pytest.raises(SecretExpired, match="expired"):
        fetch_secret(owner=alice, provider="github", purpose="clone", actor="worker")
    secret.refresh_from_db()
    assert secret.state == SecretState.EXPIRED
    assert SecretAccess.objects.get().outcome == AccessOutcome.EXPIRED


def test_undecryptable_is_recorded_not_crashing(alice):
    secret = do_store_secret(
        owner=alice, provider="claude", kind="api_key", value=track_secret("sk-ant-api03-" + "u" * 30)
    )
    with connection.cursor() as cursor:  # a row written under another key
        cursor.execute("UPDATE secrets_app_secret SET value = %s WHERE id = %s", [b"\x80garbage" * 8, secret.pk])
    with pytest.raises(SecretUndecryptable, match="cannot be decrypted"):
        fetch_secret(owner=alice, provider="claude", purpose="agent", actor="worker")
    access = SecretAccess.objects.get()
    assert access.outcome == AccessOutcome.UNDECRYPTABLE and access.secret_id == secret.pk
    # metadata listings still work
    from secrets_app.selectors import claude_status

    assert claude_status(owner=alice).state == "connected"


def test_revoke_drops_ciphertext_and_blocks_fetch(alice):
    value = classic_token()
    secret = do_store_secret(owner=alice, provider="github", kind="pat", value=value)
    do_revoke_secret(secret=secret, actor="alice")
    secret.refresh_from_db()
    assert secret.state == SecretState.REVOKED and "alice" in secret.state_reason
    with pytest.raises(SecretMissing):
        fetch_secret(owner=alice, provider="github", purpose="t", actor="a")


@pytest.mark.hostile
def test_another_users_secret_is_never_fetched(alice, bob):
    do_store_secret(owner=alice, provider="github", kind="pat", value=classic_token())
    with pytest.raises(SecretMissing):
        fetch_secret(owner=bob, provider="github", purpose="t", actor="bob")


def test_store_rejects_unknown_kind_and_empty(alice):
    with pytest.raises(ValueError, match="no secret kind"):
        do_store_secret(owner=alice, provider="github", kind="api_key", value="x")
    with pytest.raises(ValueError, match="empty"):
        do_store_secret(owner=alice, provider="github", kind="pat", value="   ")
