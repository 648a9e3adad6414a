"""A Claude credential the CLI rejected during a run is marked expired, so the settings card and the banner tell its
owner to reconnect (docs/RUNBOOK.md, "Token expiry")."""

from __future__ import annotations

from execution.models import Attempt
from execution.runner.outcomes import is_auth_failure
from secrets_app.models import SecretState
from secrets_app.secret_store import do_mark_secret_state
from secrets_app.selectors import secret_for_owner

#: What the attempt's log says when it marked the credential expired.
REJECTED = "Claude rejected the credential: it is marked expired. Reconnect Claude in Settings."


def expire_rejected_credential(*, attempt: Attempt, secret_id: int | None, text: str) -> bool:
    """Mark the session's Claude credential (``secret_id``) expired when the CLI's error (``text``, masked) says
    Claude rejected it. Whether it did."""
    if not secret_id or not is_auth_failure(text):
        return False
    do_mark_secret_state(
        secret=secret_for_owner(owner=attempt.task.owner, secret_id=secret_id),
        state=SecretState.EXPIRED,
        reason=f"Claude rejected it during attempt {attempt.pk} ({text[:120]})",
    )
    return True
