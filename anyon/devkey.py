"""Where the secret-store key comes from.

Production reads ``ANYON_SECRET_KEY``. A development machine (``DEBUG`` on) without it gets a key generated once
into a file outside the repository, so secrets survive restarts; it is announced loudly because losing that file
means losing every stored secret.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

MIN_KEY_LENGTH = 32


def resolve_secret_key(value: str, *, debug: bool, dev_key_file: Path, diagnosing: bool = False) -> tuple[str, str]:
    """Return ``(key, source)`` where source is ``"env"``, ``"dev-file"`` or, only while ``doctor`` runs
    (``diagnosing``), ``"missing"`` with a throw-away key: doctor exists to say what is missing, so it must start
    without the key and report it as one of its lines."""
    if value:
        if len(value) < MIN_KEY_LENGTH:
            raise ImproperlyConfigured(
                f"ANYON_SECRET_KEY is too short ({len(value)} chars); use at least {MIN_KEY_LENGTH}, e.g. "
                "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"
            )
        return value, "env"
    if not debug and diagnosing:
        return secrets.token_urlsafe(48), "missing"
    if not debug:
        raise ImproperlyConfigured(
            "ANYON_SECRET_KEY is not set. It encrypts every stored credential and is required when DEBUG is off. "
            "Generate one with: python3 -c 'import secrets; print(secrets.token_urlsafe(48))' "
            "and keep it with your database backup (docs/DEPLOYMENT.md)."
        )
    if dev_key_file.exists():
        key = dev_key_file.read_text().strip()
        created = False
    else:
        dev_key_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = secrets.token_urlsafe(48)
        fd = os.open(dev_key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(key + "\n")
        created = True
    if not os.environ.get("ANYON_QUIET_DEV_KEY"):
        verb = "GENERATED" if created else "USING"
        print(
            f"\n!!! {verb} A DEVELOPMENT SECRET KEY in {dev_key_file} (DEBUG is on, ANYON_SECRET_KEY unset).\n"
            "!!! Stored credentials are encrypted with it: losing or changing it makes them unreadable.\n"
            "!!! Set ANYON_SECRET_KEY for any real deployment.\n",
            file=sys.stderr,
        )
        os.environ["ANYON_QUIET_DEV_KEY"] = "1"  # once per process tree, not on every import
    return key, "dev-file"
