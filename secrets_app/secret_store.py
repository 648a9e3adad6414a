"""The secret store: the only way a credential goes in or comes out (docs/ARCHITECTURE.md, "Reads, actions, views"
and "Secret rules"); every decrypt (:func:`fetch_secret`) is audited, also when it fails."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone
from django_cryptography.core.signing import BadSignature
from django_cryptography.utils.crypto import InvalidToken

from secrets_app.errors import SecretError, SecretExpired, SecretMissing, SecretUndecryptable
from secrets_app.events import wake_settings_viewers
from secrets_app.fingerprint import fingerprint
from secrets_app.models import PROVIDER_KINDS, AccessOutcome, Kind, Provider, Secret, SecretAccess, SecretState
from shared.dates import local_day

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FetchedSecret:
    """A decrypted secret. ``repr`` hides the value so it cannot leak through logs or tracebacks."""

    secret_id: int
    provider: str
    kind: str
    value: str

    def __repr__(self) -> str:
        return f"FetchedSecret(id={self.secret_id}, provider={self.provider!r}, kind={self.kind!r}, value=***)"


def do_store_secret(
    *,
    owner,
    provider: str,
    kind: str,
    value: str,
    account_login: str = "",
    scopes: Iterable[str] = (),
    expires_at: datetime | None = None,
    note: str = "",
    validated: bool = True,
) -> Secret:
    """Store a credential as the owner's active one of its kind; a previous active one is revoked."""
    if kind not in PROVIDER_KINDS.get(provider, ()):
        raise ValueError(f"{provider} has no secret kind {kind!r}")
    value = value.strip()
    if not value:
        raise ValueError("an empty secret cannot be stored")
    now = timezone.now()
    with transaction.atomic():
        # The replaced credential's ciphertext goes too, as when it is revoked: it is never needed again.
        Secret.objects.filter(owner=owner, provider=provider, kind=kind, state=SecretState.ACTIVE).update(
            state=SecretState.REVOKED, state_reason="replaced by a newer credential", value="", updated_at=now
        )
        secret = Secret.objects.create(
            owner=owner,
            provider=provider,
            kind=kind,
            value=value,
            fingerprint=fingerprint(value),
            account_login=account_login,
            scopes=sorted(set(scopes)),
            note=note[:255],
            expires_at=expires_at,
            last_validated_at=now if validated else None,
        )
        wake_settings_viewers(user_id=owner.pk, provider=provider)
    logger.info("stored %s %s secret %s for user %s", provider, kind, secret.pk, owner.pk)
    return secret


def do_revoke_secret(*, secret: Secret, actor: str, reason: str = "disconnected") -> None:
    """Revoke (disconnect) one secret. The ciphertext is dropped too: a revoked credential is never needed again."""
    with transaction.atomic():
        Secret.objects.filter(pk=secret.pk).update(
            state=SecretState.REVOKED, state_reason=f"{reason} by {actor}"[:255], value="", updated_at=timezone.now()
        )
        wake_settings_viewers(user_id=secret.owner_id, provider=secret.provider)
    logger.info("secret %s revoked by %s", secret.pk, actor)


def do_mark_secret_state(*, secret: Secret, state: str, reason: str) -> None:
    """Record what validation found out (expired, invalid) so the cards and notices show it."""
    with transaction.atomic():
        Secret.objects.filter(pk=secret.pk).update(state=state, state_reason=reason[:255], updated_at=timezone.now())
        wake_settings_viewers(user_id=secret.owner_id, provider=secret.provider)


def do_record_validation(
    *, secret: Secret, account_login: str, scopes: Iterable[str], expires_at: datetime | None
) -> None:
    with transaction.atomic():
        Secret.objects.filter(pk=secret.pk).update(
            account_login=account_login,
            scopes=sorted(set(scopes)),
            expires_at=expires_at,
            last_validated_at=timezone.now(),
            updated_at=timezone.now(),
        )
        wake_settings_viewers(user_id=secret.owner_id, provider=secret.provider)


def do_record_secret_access(*, owner, secret_id, provider, actor, purpose, attempt_id, outcome, detail="") -> None:
    """The audit row of one decrypt (or a failed try): written by :func:`fetch_secret`, also when it fails."""
    SecretAccess.objects.create(
        owner=owner,
        secret_id=secret_id,
        provider=provider,
        actor=actor[:150],
        purpose=purpose[:255],
        attempt_id=attempt_id,
        outcome=outcome,
        detail=detail[:255],
    )


def do_note_secret_uses(*, attempt_id: int, provider: str, actor: str, uses: int) -> None:
    """Note on the latest successful decrypt of ``provider`` for ``attempt_id`` by ``actor`` how many uses it served
    (a process that keeps a decrypted value for a few seconds, the egress proxy, reports it when it drops it)."""
    with transaction.atomic():
        access = (
            SecretAccess.objects.select_for_update()
            .filter(attempt_id=attempt_id, provider=provider, actor=actor[:150], outcome=AccessOutcome.SUCCESS)
            .order_by("-id")
            .first()
        )
        if access is not None:
            access.detail = f"served {uses} request{'s' if uses != 1 else ''}"[:255]
            access.save(update_fields=["detail"])


def fetch_secret(
    *,
    owner,
    provider: str,
    purpose: str,
    actor: str,
    kinds: Iterable[str] | None = None,
    attempt_id: int | None = None,
) -> FetchedSecret:
    """Decrypt the owner's active credential of ``provider`` (first of ``kinds`` that exists) and audit it.

    The kinds are tried in order, so ``kinds=("pat", "oauth_token")`` makes a PAT take precedence.
    Raises :class:`SecretMissing`, :class:`SecretExpired` or :class:`SecretUndecryptable`; each failure is recorded.
    """
    kinds = tuple(kinds or PROVIDER_KINDS[provider])
    record = {"owner": owner, "provider": provider, "actor": actor, "purpose": purpose, "attempt_id": attempt_id}
    candidates = {
        s.kind: s
        for s in Secret.objects.defer("value").filter(
            owner=owner, provider=provider, kind__in=kinds, state=SecretState.ACTIVE
        )
    }
    secret = next((candidates[k] for k in kinds if k in candidates), None)
    try:
        if secret is None:
            raise SecretMissing(f"No {provider} credential is connected. Connect one in Settings.")
        if secret.expires_at and secret.expires_at <= timezone.now():
            do_mark_secret_state(secret=secret, state=SecretState.EXPIRED, reason="expiry date passed")
            raise SecretExpired(
                f"Your {secret.get_provider_display()} credential expired on "
                f"{local_day(secret.expires_at)}. Connect it again in Settings."
            )
        try:
            value = Secret.objects.values_list("value", flat=True).get(pk=secret.pk)
        except (BadSignature, InvalidToken) as exc:
            raise SecretUndecryptable(
                f"The stored {provider} credential cannot be decrypted (was ANYON_SECRET_KEY changed without "
                "rotate_secret_key?). Connect it again."
            ) from exc
        if not value:
            raise SecretMissing(f"The stored {provider} credential is empty. Connect it again.")
    except SecretError as exc:
        do_record_secret_access(**record, secret_id=secret.pk if secret else None, outcome=exc.outcome, detail=str(exc))
        logger.warning("secret lookup failed: %s/%s for user %s (%s)", provider, purpose, owner.pk, exc.outcome)
        raise
    do_record_secret_access(**record, secret_id=secret.pk, outcome=AccessOutcome.SUCCESS)
    return FetchedSecret(secret_id=secret.pk, provider=provider, kind=secret.kind, value=value)


def do_store_setup_secret(*, owner, value: str, note: str) -> Secret:
    """Store one setup secret of an environment (many may be active; the environment names it). No fingerprint:
    a setup secret is shown by its name only."""
    if not value:
        raise ValueError("an empty secret cannot be stored")
    with transaction.atomic():
        secret = Secret.objects.create(
            owner=owner,
            provider=Provider.ENVIRONMENT,
            kind=Kind.SETUP_SECRET,
            value=value,
            fingerprint="",
            note=note[:255],
        )
    logger.info("stored setup secret %s for user %s", secret.pk, owner.pk)
    return secret


def fetch_secret_by_id(*, owner, secret_id: int, purpose: str, actor: str, attempt_id: int | None) -> FetchedSecret:
    """Decrypt one of the owner's active secrets by id and audit it (setup secrets: an environment names several)."""
    secret = Secret.objects.defer("value").filter(owner=owner, pk=secret_id, state=SecretState.ACTIVE).first()
    record = {"owner": owner, "actor": actor, "purpose": purpose, "attempt_id": attempt_id}
    provider = secret.provider if secret else Provider.ENVIRONMENT
    try:
        if secret is None:
            raise SecretMissing("A setup secret of this environment is gone. Save it again.")
        try:
            value = Secret.objects.values_list("value", flat=True).get(pk=secret.pk)
        except (BadSignature, InvalidToken) as exc:
            raise SecretUndecryptable(
                "A stored setup secret cannot be decrypted (was ANYON_SECRET_KEY changed without rotate_secret_key?). "
                "Save it again."
            ) from exc
    except SecretError as exc:
        failed = {"secret_id": secret.pk if secret else None, "outcome": exc.outcome, "detail": str(exc)}
        do_record_secret_access(**record, provider=provider, **failed)
        raise
    do_record_secret_access(**record, provider=provider, secret_id=secret.pk, outcome=AccessOutcome.SUCCESS)
    return FetchedSecret(secret_id=secret.pk, provider=provider, kind=secret.kind, value=value)
