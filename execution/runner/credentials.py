"""The owner's credentials for one session, decrypted for it (each decrypt audited and named after the session)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from execution.attempts import secret_dir
from execution.models import Attempt
from secrets_app.errors import SecretError
from secrets_app.models import Kind, Provider
from secrets_app.secret_store import fetch_secret
from secrets_app.selectors import GITHUB_PRECEDENCE
from shared.alerts import AlertKind, do_raise_alert

CLAUDE_KINDS = (Kind.OAUTH_TOKEN, Kind.API_KEY)


@dataclass
class SessionCredentials:
    #: Secret-dir file name → value.
    files: dict[str, str] = field(default_factory=dict)
    claude_secret_id: int | None = None
    claude_kind: str | None = None
    #: Values that are masked and guarded against pushes but never given to the container.
    guard_only: list[str] = field(default_factory=list)

    def values(self) -> list[str]:
        return [*self.files.values(), *self.guard_only]


def collect_credentials(
    *, attempt: Attempt, actor: str, need_claude: bool, say: Callable[[str], None], guard_claude: bool = False
) -> SessionCredentials:
    """GitHub is optional (public repositories clone without it); Claude is required for agent steps and its
    absence raises :class:`SecretError`. Expired or undecryptable credentials also raise an alert.
    ``guard_claude``: a session without the agent that pushes still needs the Claude credential's value, to refuse
    commits that carry it."""
    owner = attempt.task.owner
    found = SessionCredentials()
    common = {"owner": owner, "actor": actor, "attempt_id": attempt.pk, "purpose": "attempt run"}
    try:
        github = fetch_secret(provider=Provider.GITHUB, kinds=GITHUB_PRECEDENCE, **common)
        found.files[secret_dir.GITHUB_TOKEN] = github.value
    except SecretError as exc:
        say(f"GitHub: {exc} Cloning without a token (works for public repositories only).")
        _alert_lookup(attempt, exc)
    if need_claude:
        try:
            claude = fetch_secret(provider=Provider.CLAUDE, kinds=CLAUDE_KINDS, **common)
        except SecretError as exc:
            _alert_lookup(attempt, exc)
            raise
        found.claude_secret_id, found.claude_kind = claude.secret_id, claude.kind
        name = secret_dir.CLAUDE_OAUTH_TOKEN if claude.kind == Kind.OAUTH_TOKEN else secret_dir.ANTHROPIC_API_KEY
        found.files[name] = claude.value
    elif guard_claude:
        try:
            claude = fetch_secret(
                provider=Provider.CLAUDE,
                kinds=(Kind.OAUTH_TOKEN, Kind.API_KEY),
                **{**common, "purpose": "pre-push guard"},
            )
            found.guard_only.append(claude.value)  # masked and guarded, never written: a push needs only git
        except SecretError:
            pass
    return found


def _alert_lookup(attempt: Attempt, exc: SecretError) -> None:
    if exc.outcome in ("expired", "undecryptable"):
        do_raise_alert(
            kind=AlertKind.SECRET_LOOKUP_FAILED,
            message=f"attempt {attempt.pk}: {exc}",
            attempt=attempt,
            user=attempt.task.owner,
        )
