"""Which events of a session alert an operator (shared/alerts.py): each alert's kind, message and dedupe key.

The egress proxy's alerts are raised where the proxy is met (execution/runner/sealing.py), the credentials' where
they are collected (execution/runner/credentials.py).
"""

from __future__ import annotations

from execution.models import Attempt, Run, RunStatus
from execution.runner.outcomes import ExecEnd, StepOutcome
from shared.alerts import AlertKind, do_raise_alert


def alert_secret_injection_failed(*, attempt: Attempt, user, error: str) -> None:
    do_raise_alert(kind=AlertKind.SECRET_INJECTION_FAILED, message=error, attempt=attempt, user=user)


def alert_secret_cleanup_failed(*, attempt: Attempt, user, path) -> None:
    do_raise_alert(
        kind=AlertKind.SECRET_CLEANUP_FAILED,
        message=f"secret dir {path} of attempt {attempt.pk} still exists after removal",
        attempt=attempt,
        user=user,
    )


def alert_push_refused(*, attempt: Attempt, user, reason: str) -> None:
    do_raise_alert(
        kind=AlertKind.PUSH_REFUSED_SECRET, message=f"attempt {attempt.pk}: {reason}", attempt=attempt, user=user
    )


def alert_nonzero_exit(*, attempt: Attempt, user, run: Run, outcome: StepOutcome, end: ExecEnd) -> None:
    """A step that failed by its own exit code (not stopped, not a broken exec): one alert per run."""
    if outcome.status == RunStatus.FAILED and end.stopped is None and end.exit_code not in (None, 0):
        do_raise_alert(
            kind=AlertKind.EXEC_NONZERO_EXIT,
            message=f"attempt {attempt.pk}: {run.title or run.kind} exited with {end.exit_code}",
            attempt=attempt,
            user=user,
            dedupe_key=f"exec_nonzero_exit:{attempt.pk}:{run.pk}",
        )


def alert_claude_cli_error(*, attempt: Attempt, user, text: str) -> None:
    """An error result of the CLI (``text``: its errors, masked and cut)."""
    do_raise_alert(kind=AlertKind.CLAUDE_CLI_ERROR, message=f"attempt {attempt.pk}: {text}", attempt=attempt, user=user)
