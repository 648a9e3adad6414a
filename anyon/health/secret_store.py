"""Whether this process's ANYON_SECRET_KEY decrypts the secret store (its key canary; secrets_app/key_canary.py)."""

from __future__ import annotations

from anyon.health.checks import FAIL, OK, WARN, Check

NAME = "secret store"


def check_secret_store() -> Check:
    """A store written under another key is a ✗ and a ``secret_lookup_failed`` alert, not a run failing later."""
    from secrets_app.key_canary import alert_if_undecryptable

    try:
        problem = alert_if_undecryptable("doctor")
    except Exception as exc:  # the database line says why the database cannot be read
        return Check(NAME, WARN, f"not checked: {type(exc).__name__}", "see the database line", required=False)
    if problem:
        return Check(
            NAME,
            FAIL,
            problem,
            "put the key the store was written with back into ANYON_SECRET_KEY (the services' settings file), or "
            "finish the rotation with manage.py rotate_secret_key (docs/RUNBOOK.md, Rotating the secret key)",
        )
    return Check(NAME, OK, "ANYON_SECRET_KEY decrypts the store (key canary)")
