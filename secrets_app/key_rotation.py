"""Re-encrypt every encrypted column from an old ``ANYON_SECRET_KEY`` to the current one.

django-cryptography derives its AES key from the key (PBKDF2) and signs each ciphertext with HMAC under the raw
key, and its fields capture the key when they are created. So rotation works on the raw column bytes with two
explicit ciphers, never through the model fields. The stored bytes are the field's pickled value; they are moved
across unchanged, not unpickled.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.apps import apps
from django.conf import settings
from django.db import connection, transaction
from django_cryptography.core.signing import BadSignature, FernetSigner
from django_cryptography.fields import EncryptedMixin
from django_cryptography.utils.crypto import FernetBytes, InvalidToken, pbkdf2

logger = logging.getLogger(__name__)

PBKDF2_ITERATIONS = 30000  # django-cryptography's CryptographyConf.configure


def cipher_for(raw_key: str) -> FernetBytes:
    derived = pbkdf2(raw_key, settings.CRYPTOGRAPHY_SALT, PBKDF2_ITERATIONS, digest=settings.CRYPTOGRAPHY_DIGEST)
    return FernetBytes(key=derived, signer=FernetSigner(key=raw_key))


def encrypted_columns() -> list[tuple[type, object]]:
    """Every (model, field) pair whose column django-cryptography encrypts, across all installed apps."""
    return [
        (model, f) for model in apps.get_models() for f in model._meta.concrete_fields if isinstance(f, EncryptedMixin)
    ]


@dataclass
class RotationReport:
    rotated: int = 0
    already_current: int = 0
    unreadable: list[str] = field(default_factory=list)  # "app.Model#pk.column", left untouched


def do_rotate_secret_key(*, old_key: str, new_key: str | None = None, dry_run: bool = False) -> RotationReport:
    """Re-encrypt all rows in one transaction. Rows readable with neither key are reported and left as they are."""
    new_key = new_key or settings.SECRET_KEY
    old, new = cipher_for(old_key), cipher_for(new_key)
    report = RotationReport()
    quote = connection.ops.quote_name
    with transaction.atomic():
        for model, column in encrypted_columns():
            table, pk, col = quote(model._meta.db_table), quote(model._meta.pk.column), quote(column.column)
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT {pk}, {col} FROM {table} WHERE {col} IS NOT NULL")  # noqa: S608
                rows = cursor.fetchall()
            for row_pk, raw in rows:
                token = bytes(raw)
                try:
                    plain = old.decrypt(token)
                except (BadSignature, InvalidToken):
                    try:
                        new.decrypt(token)
                    except (BadSignature, InvalidToken):
                        report.unreadable.append(f"{model._meta.label}#{row_pk}.{column.name}")
                    else:
                        report.already_current += 1
                    continue
                if not dry_run:
                    with connection.cursor() as cursor:
                        cursor.execute(
                            f"UPDATE {table} SET {col} = %s WHERE {pk} = %s",  # noqa: S608
                            [new.encrypt(plain), row_pk],
                        )
                report.rotated += 1
    return report


def use_secret_key(raw_key: str) -> None:
    """Make this process decrypt and encrypt with ``raw_key`` from now on: the settings, and the cipher each
    encrypted field took when it was created (django-cryptography's ``_fernet``)."""
    cipher = cipher_for(raw_key)
    for _model, column in encrypted_columns():
        column._fernet = cipher
    settings.SECRET_KEY = raw_key
    settings.CRYPTOGRAPHY_KEY = cipher.key


def key_in_env_file() -> str:
    """ANYON_SECRET_KEY as the services' settings file (``ANYON_ENV_FILE``) holds it now ("" without one)."""
    from shared.env_file import read_env_file

    try:
        return read_env_file(settings.ANYON_ENV_FILE).get("ANYON_SECRET_KEY", "").strip()
    except OSError:
        return ""


def reload_secret_key() -> bool:
    """Take ANYON_SECRET_KEY from the services' settings file when it differs from this process's and decrypts the
    store (its key canary): a long-running process (the egress proxy) follows a rotation without a restart. Returns
    whether the key changed."""
    from secrets_app.key_canary import store_problem

    key, current = key_in_env_file(), settings.SECRET_KEY
    if not key or key == current:
        return False
    use_secret_key(key)
    problem = store_problem()
    if problem:  # not the store's key either (another installation's file?): keep the one it had
        use_secret_key(current)
        logger.error("secret key in %s not taken: %s", settings.ANYON_ENV_FILE, problem)
        return False
    logger.warning("secret key reloaded from %s", settings.ANYON_ENV_FILE)
    return True
