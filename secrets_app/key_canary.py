"""Whether this process's ANYON_SECRET_KEY is the secret store's key (docs/ARCHITECTURE.md, "Secret rules")."""

from __future__ import annotations

import hashlib
import secrets

from django.db import DatabaseError, connection, transaction
from django_cryptography.core.signing import BadSignature
from django_cryptography.utils.crypto import InvalidToken

from secrets_app.models import KeyCanary, Secret
from shared.alerts import AlertKind, do_raise_alert

#: Stored credentials a store without a canary is judged by (the newest): none of them decrypting is a wrong key.
SAMPLE = 20


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _canary_reads() -> bool | None:
    """Whether the canary decrypts to what was written (None: there is none)."""
    row = KeyCanary.objects.defer("value").order_by("pk").first()
    if row is None:
        return None
    try:
        value = KeyCanary.objects.values_list("value", flat=True).get(pk=row.pk)
    except (BadSignature, InvalidToken):
        return False
    return isinstance(value, str) and _digest(value) == row.digest


def _stored_values_read() -> bool | None:
    """Whether any of the newest stored credentials decrypts (None: nothing is stored)."""
    ids = list(Secret.objects.exclude(value__isnull=True).order_by("-pk").values_list("pk", flat=True)[:SAMPLE])
    tried = 0
    for pk in ids:
        try:
            value = Secret.objects.values_list("value", flat=True).get(pk=pk)
        except (BadSignature, InvalidToken):
            tried += 1
            continue
        if value:  # a revoked row keeps an empty value, which says nothing about the key
            return True
    return False if tried else None


def store_problem() -> str:
    """Why this process cannot decrypt the secret store, or "" when it can (or nothing is stored yet)."""
    canary = _canary_reads()
    if canary is False:
        return "the key canary does not decrypt: ANYON_SECRET_KEY is not the key the secret store was written with"
    if canary is None and _stored_values_read() is False:
        return "none of the newest stored credentials decrypts: ANYON_SECRET_KEY is not the store's key"
    return ""


def do_ensure_canary() -> bool:
    """Write the canary under this process's key when there is none, unless stored credentials show that this key is
    not the store's. Returns whether one was written."""
    try:
        if "secrets_app_keycanary" not in connection.introspection.table_names():
            return False  # migrated only part of the way
        with transaction.atomic():
            if KeyCanary.objects.exists() or _stored_values_read() is False:
                return False
            value = secrets.token_urlsafe(32)
            KeyCanary.objects.create(value=value, digest=_digest(value))
    except DatabaseError:
        return False
    return True


def alert_if_undecryptable(where: str) -> str:
    """Check the store's key; when this process cannot decrypt the store, raise ``secret_lookup_failed`` (once per
    alert window) and return why."""
    problem = store_problem()
    if problem:
        do_raise_alert(
            kind=AlertKind.SECRET_LOOKUP_FAILED,
            message=f"{where}: {problem}. Every run that needs a credential fails until the key matches "
            "(docs/RUNBOOK.md, Rotating the secret key).",
            dedupe_key=f"secret_store_key:{where}",
        )
    return problem


def post_migrate_canary(sender, **kwargs) -> None:
    do_ensure_canary()
