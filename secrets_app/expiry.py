"""Daily token check: GitHub tokens are re-validated (a 401 marks them invalid), every credential with an expiry
date is marked expired once it passes, and owners are told ahead of time (banner on every page, e-mail, alert)."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import send_mail
from django.utils import timezone

from secrets_app import github_client
from secrets_app.errors import ConnectError, SecretError
from secrets_app.github_connect import do_check_github_secret
from secrets_app.models import Provider, Secret, SecretState
from secrets_app.secret_store import do_mark_secret_state
from secrets_app.selectors import EXPIRY_WARNING
from shared.alerts import AlertKind, do_raise_alert
from shared.dates import days_until, local_day
from shared.models import AlertSeverity

logger = logging.getLogger(__name__)


def _tell_owner(secret: Secret, subject: str, body: str) -> None:
    if not secret.owner.email:
        return
    try:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [secret.owner.email])
    except Exception:
        logger.warning("could not e-mail %s about secret %s", secret.owner_id, secret.pk, exc_info=True)


def check_token_expiry() -> str:
    now = timezone.now()
    expired = expiring = invalid = 0
    for secret in Secret.objects.defer("value").filter(state=SecretState.ACTIVE).select_related("owner"):
        name = secret.get_provider_display()
        if secret.expires_at and secret.expires_at <= now:
            do_mark_secret_state(secret=secret, state=SecretState.EXPIRED, reason="expiry date passed")
            expired += 1
            do_raise_alert(
                kind=AlertKind.TOKEN_EXPIRED,
                severity=AlertSeverity.WARNING,
                message=f"{name} credential …{secret.fingerprint} of {secret.owner} expired "
                f"on {local_day(secret.expires_at)}",
                user=secret.owner,
                dedupe_key=f"token_expired:{secret.pk}",
            )
            _tell_owner(secret, f"Your {name} connection expired", f"Connect {name} again in Anyon Cloud Settings.")
            continue
        if secret.expires_at and secret.expires_at - now <= EXPIRY_WARNING:
            expiring += 1
            days = days_until(secret.expires_at, now)
            do_raise_alert(
                kind=AlertKind.TOKEN_EXPIRING,
                severity=AlertSeverity.INFO,
                message=f"{name} credential …{secret.fingerprint} of {secret.owner} expires in {days} day(s)",
                user=secret.owner,
                dedupe_key=f"token_expiring:{secret.pk}:{now:%Y-%m-%d}",
            )
            _tell_owner(
                secret,
                f"Your {name} connection expires in {days} day(s)",
                f"Renew it in Anyon Cloud Settings before {local_day(secret.expires_at)}.",
            )
        if secret.provider == Provider.GITHUB:
            try:
                do_check_github_secret(secret=secret, actor="scheduler:token-check")
            except github_client.InvalidCredential:
                invalid += 1
            except (ConnectError, SecretError) as exc:
                logger.warning("token check of secret %s inconclusive: %s", secret.pk, exc)
    return f"expired {expired}, expiring {expiring}, invalid {invalid}"
