"""Connecting a GitHub account: OAuth device flow and personal access tokens, and re-checking a connection."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from secrets_app import github_client
from secrets_app.errors import ConnectError
from secrets_app.events import wake_settings_viewers
from secrets_app.models import DeviceFlowStatus, GitHubDeviceFlow, Kind, Provider, Secret, SecretState
from secrets_app.secret_store import do_mark_secret_state, do_record_validation, do_store_secret, fetch_secret
from shared.dates import local_day

logger = logging.getLogger(__name__)

REQUIRED_SCOPE = "repo"
FINE_GRAINED_NOTE = (
    "Fine-grained token: GitHub does not report its permissions. It needs access to the repositories you use with "
    "Contents: read and write, Pull requests: read and write, and Metadata: read."
)


def _require_repo_scope(user: github_client.GitHubUser) -> None:
    if user.scopes_known and REQUIRED_SCOPE not in user.scopes:
        has = ", ".join(user.scopes) or "no scopes"
        raise ConnectError(
            f"This token lacks the 'repo' scope (it has {has}). Create a classic token with the 'repo' scope, "
            "or a fine-grained token with Contents and Pull requests read/write."
        )


def do_connect_pat(*, owner, raw_token: str) -> Secret:
    """Validate a personal access token against ``GET /user`` and store it. Raises ConnectError with the reason."""
    token = github_client.normalize_token(raw_token)
    user = github_client.get_user(token)
    _require_repo_scope(user)
    if user.expires_at and user.expires_at <= timezone.now():
        raise ConnectError(f"This token expired on {local_day(user.expires_at)}. Create a new one.")
    return do_store_secret(
        owner=owner,
        provider=Provider.GITHUB,
        kind=Kind.PAT,
        value=token,
        account_login=user.login,
        scopes=user.scopes,
        expires_at=user.expires_at,
        note="" if user.scopes_known else FINE_GRAINED_NOTE,
    )


def do_start_device_flow(*, owner, session_key: str) -> GitHubDeviceFlow:
    """Ask GitHub for a user code. A pending flow of the same session is cancelled: one flow per session."""
    code = github_client.request_device_code()
    now = timezone.now()
    with transaction.atomic():
        GitHubDeviceFlow.objects.filter(owner=owner, session_key=session_key, status=DeviceFlowStatus.PENDING).update(
            status=DeviceFlowStatus.CANCELLED, message="replaced by a new sign-in", updated_at=now
        )
        flow = GitHubDeviceFlow.objects.create(
            owner=owner,
            session_key=session_key,
            device_code=code.device_code,
            user_code=code.user_code,
            verification_uri=code.verification_uri,
            interval=max(1, code.interval),
            expires_at=now + timedelta(seconds=code.expires_in),
            next_poll_at=now + timedelta(seconds=max(1, code.interval)),
        )
        wake_settings_viewers(user_id=owner.pk, provider=Provider.GITHUB)
    return flow


def _finish(flow: GitHubDeviceFlow, status: str, message: str) -> GitHubDeviceFlow:
    with transaction.atomic():
        GitHubDeviceFlow.objects.filter(pk=flow.pk).update(
            status=status, message=message[:255], updated_at=timezone.now()
        )
        wake_settings_viewers(user_id=flow.owner_id, provider=Provider.GITHUB)
    flow.status, flow.message = status, message[:255]
    return flow


def do_cancel_device_flow(*, flow: GitHubDeviceFlow) -> GitHubDeviceFlow:
    if flow.status != DeviceFlowStatus.PENDING:
        return flow
    return _finish(flow, DeviceFlowStatus.CANCELLED, "Sign-in cancelled.")


def do_poll_device_flow(*, flow_id: int, owner) -> GitHubDeviceFlow:
    """Poll GitHub once if the flow's interval allows it; otherwise return the flow unchanged.

    The interval is enforced here, not by the caller: ``next_poll_at`` is claimed with a conditional update, so two
    browser tabs polling at once still make one request per interval, and ``slow_down`` widens the interval.
    """
    flow = GitHubDeviceFlow.objects.get(pk=flow_id, owner=owner)
    if flow.status != DeviceFlowStatus.PENDING:
        return flow
    now = timezone.now()
    if now >= flow.expires_at:
        return _finish(flow, DeviceFlowStatus.EXPIRED, "The code expired before it was approved. Start again.")
    claimed = GitHubDeviceFlow.objects.filter(
        pk=flow.pk, status=DeviceFlowStatus.PENDING, next_poll_at__lte=now
    ).update(next_poll_at=now + timedelta(seconds=flow.interval))
    if not claimed:
        return flow
    flow.next_poll_at = now + timedelta(seconds=flow.interval)
    try:
        result = github_client.poll_device_token(flow.device_code)
    except ConnectError as exc:
        # A network hiccup is not the end of the flow: keep it pending and try at the next interval.
        with transaction.atomic():
            GitHubDeviceFlow.objects.filter(pk=flow.pk).update(message=str(exc)[:255])
        flow.message = str(exc)
        return flow
    if result.access_token:
        try:
            user = github_client.get_user(result.access_token)
            _require_repo_scope(user)
        except ConnectError as exc:
            return _finish(flow, DeviceFlowStatus.FAILED, str(exc))
        do_store_secret(
            owner=owner,
            provider=Provider.GITHUB,
            kind=Kind.OAUTH_TOKEN,
            value=result.access_token,
            account_login=user.login,
            scopes=user.scopes or result.scopes,
            expires_at=user.expires_at,
        )
        return _finish(flow, DeviceFlowStatus.SUCCEEDED, f"Connected as @{user.login}.")
    if result.error == "authorization_pending":
        return flow
    if result.error == "slow_down":
        interval = result.interval or flow.interval + 5
        with transaction.atomic():
            GitHubDeviceFlow.objects.filter(pk=flow.pk).update(
                interval=interval, next_poll_at=now + timedelta(seconds=interval)
            )
        flow.interval, flow.next_poll_at = interval, now + timedelta(seconds=interval)
        return flow
    if result.error == "expired_token":
        return _finish(flow, DeviceFlowStatus.EXPIRED, "The code expired before it was approved. Start again.")
    if result.error == "access_denied":
        return _finish(flow, DeviceFlowStatus.DENIED, "Access was denied on GitHub. Start again to retry.")
    detail = result.error_description or result.error
    return _finish(flow, DeviceFlowStatus.FAILED, f"GitHub sign-in failed: {detail}.")


def do_check_github_secret(*, secret: Secret, actor: str) -> str:
    """Re-validate a stored GitHub credential with ``GET /user``; a 401 marks it expired or invalid."""
    fetched = fetch_secret(
        owner=secret.owner, provider=Provider.GITHUB, kinds=(secret.kind,), purpose="check connection", actor=actor
    )
    try:
        user = github_client.get_user(fetched.value)
    except github_client.InvalidCredential as exc:
        do_mark_github_token_rejected(secret_id=secret.pk, reason=str(exc))
        raise
    do_record_validation(secret=secret, account_login=user.login, scopes=user.scopes, expires_at=user.expires_at)
    return f"GitHub accepts the token: connected as @{user.login}."


def do_mark_github_token_rejected(*, secret_id: int, reason: str) -> None:
    """GitHub answered 401 to a call made with this stored credential: mark it expired (its date passed) or invalid,
    so the settings card (live), the banner and the task form say so at once instead of at the next daily check.

    Only an active credential changes: one revoked or replaced meanwhile keeps its state."""
    with transaction.atomic():  # locked: a revoke or a new connection at the same moment is not overwritten
        secret = (
            Secret.objects.select_for_update().defer("value").filter(pk=secret_id, state=SecretState.ACTIVE).first()
        )
        if secret is None:
            return
        expired = bool(secret.expires_at and secret.expires_at <= timezone.now())
        state = SecretState.EXPIRED if expired else SecretState.INVALID
        do_mark_secret_state(secret=secret, state=state, reason=reason)
    logger.info("GitHub rejected secret %s of user %s: marked %s", secret.pk, secret.owner_id, state)
