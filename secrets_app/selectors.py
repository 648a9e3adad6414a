"""Reads of the secrets app. Metadata only: the encrypted column is never loaded here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from secrets_app.models import DeviceFlowStatus, GitHubDeviceFlow, Kind, Provider, Secret, SecretState
from shared.credential_mode import CredentialMode
from shared.dates import days_until, local_day

EXPIRY_WARNING = timedelta(days=7)
#: GitHub credentials in the order the worker uses them: a PAT wins over the OAuth token.
GITHUB_PRECEDENCE = (Kind.PAT, Kind.OAUTH_TOKEN)


def secrets_metadata(*, owner) -> QuerySet[Secret]:
    return Secret.objects.defer("value").filter(owner=owner).order_by("provider", "kind", "-created_at")


def secret_for_owner(*, owner, secret_id: int) -> Secret:
    """The owner's secret, or ``Secret.DoesNotExist`` (also for another user's id: views answer 404)."""
    return Secret.objects.defer("value").get(owner=owner, pk=secret_id)


@dataclass(frozen=True)
class ProviderStatus:
    """What a settings card shows for one provider."""

    provider: str
    state: str  # not_connected, connected, expiring, expired, invalid
    secret: Secret | None
    others: list[Secret]
    problem: Secret | None  # the most recent expired/invalid one, when nothing active

    @property
    def connected(self) -> bool:
        return self.state in ("connected", "expiring")

    @property
    def days_left(self) -> int | None:
        if self.secret and self.secret.expires_at:
            return days_until(self.secret.expires_at)
        return None


def github_account_login(*, owner) -> str:
    """The GitHub login of the owner's active GitHub credential, or ``""`` (commits are authored under it)."""
    return (
        Secret.objects.filter(owner=owner, provider=Provider.GITHUB, state=SecretState.ACTIVE)
        .exclude(account_login="")
        .values_list("account_login", flat=True)
        .first()
    ) or ""


def provider_status(*, owner, provider: str, precedence: tuple[str, ...]) -> ProviderStatus:
    active = {s.kind: s for s in secrets_metadata(owner=owner).filter(provider=provider, state=SecretState.ACTIVE)}
    ordered = [active[k] for k in precedence if k in active]
    if ordered:
        current = ordered[0]
        now = timezone.now()
        if current.expires_at and current.expires_at <= now:
            state = "expired"
        elif current.expires_at and current.expires_at - now <= EXPIRY_WARNING:
            state = "expiring"
        else:
            state = "connected"
        return ProviderStatus(provider, state, current, ordered[1:], None)
    problem = (
        secrets_metadata(owner=owner)
        .filter(provider=provider, state__in=[SecretState.EXPIRED, SecretState.INVALID])
        .order_by("-updated_at")
        .first()
    )
    if problem:
        return ProviderStatus(provider, problem.state, None, [], problem)
    return ProviderStatus(provider, "not_connected", None, [], None)


def github_status(*, owner) -> ProviderStatus:
    return provider_status(owner=owner, provider=Provider.GITHUB, precedence=GITHUB_PRECEDENCE)


def claude_status(*, owner) -> ProviderStatus:
    return provider_status(owner=owner, provider=Provider.CLAUDE, precedence=(Kind.OAUTH_TOKEN, Kind.API_KEY))


def latest_device_flow(*, owner, session_key: str) -> GitHubDeviceFlow | None:
    return (
        GitHubDeviceFlow.objects.defer("device_code")
        .filter(owner=owner, session_key=session_key)
        .order_by("-created_at", "-id")
        .first()
    )


def device_flow_for_owner(*, owner, flow_id: int, session_key: str) -> GitHubDeviceFlow:
    """One of the owner's device flows, of this browser session (DoesNotExist otherwise); without its device code."""
    return GitHubDeviceFlow.objects.defer("device_code").get(pk=flow_id, owner=owner, session_key=session_key)


def settings_version(*, owner) -> tuple[tuple, tuple]:
    """What the settings cards show changes with: the owner's secrets and device flows (their state and times)."""
    rows = Secret.objects.filter(owner=owner).values_list("pk", "state", "updated_at", "last_validated_at")
    flows = GitHubDeviceFlow.objects.filter(owner=owner).values_list("pk", "status", "updated_at")
    return tuple(rows), tuple(flows)


def token_notices(*, owner) -> list[dict]:
    """Banner notices for every page: expiring soon, expired, invalid credentials."""
    notices = []
    for status in (github_status(owner=owner), claude_status(owner=owner)):
        name = dict(Provider.choices)[status.provider]
        if status.state == "expiring":
            notices.append(
                {
                    "level": "warning",
                    "text": f"Your {name} credential expires in {status.days_left} day(s) "
                    f"({local_day(status.secret.expires_at)}).",
                    "fix": "",
                    "link": "/settings/",
                    "link_text": "Renew it in Settings",
                }
            )
        elif status.state in ("expired", "invalid"):
            what = "has expired" if status.state == "expired" else "was rejected"
            notices.append(
                {
                    "level": "error",
                    "text": f"Your {name} credential {what}: runs that need it will fail.",
                    "fix": "",
                    "link": "/settings/",
                    "link_text": "Connect it again in Settings",
                }
            )
    return notices


def settings_cards_context(*, owner, session_key: str, claude_login, pat_form) -> dict:
    """Everything the card partials need; the page and the live-card websocket render from the same context.
    ``claude_login``: the user's running login (``claude_login.current_session``, state of this process, not a row);
    ``pat_form``: the form to show."""
    flow = latest_device_flow(owner=owner, session_key=session_key) if session_key else None
    if flow and flow.status != DeviceFlowStatus.PENDING and flow.updated_at < timezone.now() - timedelta(minutes=10):
        flow = None  # an old finished flow is not news any more
    return {
        "github": github_status(owner=owner),
        "claude": claude_status(owner=owner),
        "device_flow": flow,
        "claude_login": claude_login,
        "pat_form": pat_form,
        # What the server offers, so every rendering (page, refused form, live card) describes the same setup.
        "sealed_runs": settings.ANYON_CREDENTIAL_MODE == CredentialMode.SEALED,
        "device_flow_enabled": bool(settings.ANYON_GITHUB_CLIENT_ID),
        "setup_notes": owner.is_staff,  # how to turn on what the server lacks: for staff only
    }
