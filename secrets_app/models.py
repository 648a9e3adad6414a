"""The encrypted secret store's tables. No I/O here: every change goes through ``secrets_app.secret_store``.

The ``value`` columns are encrypted by django-cryptography (AES-CBC + HMAC-SHA256 signature with key material
derived from ``ANYON_SECRET_KEY``). Loading such a column decrypts it, so metadata queries always
``defer("value")`` (see ``secrets_app.selectors``): a listing must never touch plaintext, and never fail because
one row cannot be decrypted.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django_cryptography.fields import encrypt


class Provider(models.TextChoices):
    GITHUB = "github", "GitHub"
    CLAUDE = "claude", "Claude"
    ENVIRONMENT = "environment", "Environment"


class Kind(models.TextChoices):
    OAUTH_TOKEN = "oauth_token", "OAuth token"
    PAT = "pat", "Personal access token"
    API_KEY = "api_key", "API key"
    SETUP_SECRET = "setup_secret", "Setup secret"


#: Which kinds each provider has.
PROVIDER_KINDS: dict[str, tuple[str, ...]] = {
    Provider.GITHUB: (Kind.OAUTH_TOKEN, Kind.PAT),
    Provider.CLAUDE: (Kind.OAUTH_TOKEN, Kind.API_KEY),
    Provider.ENVIRONMENT: (Kind.SETUP_SECRET,),  # many per owner: an environment's setup secrets
}


class SecretState(models.TextChoices):
    ACTIVE = "active", "Active"
    EXPIRED = "expired", "Expired"
    REVOKED = "revoked", "Revoked"
    INVALID = "invalid", "Invalid"


class Secret(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="secrets")
    provider = models.CharField(max_length=16, choices=Provider.choices)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    value = encrypt(models.TextField())
    fingerprint = models.CharField(max_length=8, help_text="At most the last 4 characters, for recognition.")
    account_login = models.CharField(max_length=255, blank=True, help_text="The account the credential belongs to.")
    scopes = models.JSONField(default=list, blank=True)
    note = models.CharField(max_length=255, blank=True, help_text="Shown on the card, e.g. what a token needs.")
    expires_at = models.DateTimeField(null=True, blank=True)
    last_validated_at = models.DateTimeField(null=True, blank=True)
    state = models.CharField(max_length=16, choices=SecretState.choices, default=SecretState.ACTIVE)
    state_reason = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "provider", "kind"],
                condition=Q(state="active") & ~Q(provider="environment"),
                name="one_active_secret_per_owner_provider_kind",
            )
        ]
        indexes = [models.Index(fields=["owner", "provider", "state"])]

    def __str__(self) -> str:
        return f"{self.get_provider_display()} {self.get_kind_display()} …{self.fingerprint} ({self.state})"


class AccessOutcome(models.TextChoices):
    SUCCESS = "success", "Success"
    MISSING = "missing", "Missing"
    EXPIRED = "expired", "Expired"
    UNDECRYPTABLE = "undecryptable", "Undecryptable"


class SecretAccess(models.Model):
    """One decrypt attempt: who asked, for which secret, why, for which attempt, and what happened.

    ``attempt_id`` is a plain number, not a foreign key, so the audit trail outlives deleted attempts.
    """

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="secret_accesses")
    secret = models.ForeignKey(Secret, null=True, blank=True, on_delete=models.SET_NULL, related_name="accesses")
    provider = models.CharField(max_length=16, choices=Provider.choices)
    actor = models.CharField(max_length=150, help_text="Who decrypted: a user name or a process (worker).")
    purpose = models.CharField(max_length=255)
    attempt_id = models.PositiveBigIntegerField(null=True, blank=True, db_index=True)
    outcome = models.CharField(max_length=16, choices=AccessOutcome.choices)
    detail = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        verbose_name_plural = "secret accesses"
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.actor} → {self.provider} ({self.purpose}): {self.outcome}"


class DeviceFlowStatus(models.TextChoices):
    PENDING = "pending", "Waiting for approval"
    SUCCEEDED = "succeeded", "Connected"
    EXPIRED = "expired", "Code expired"
    DENIED = "denied", "Denied"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class GitHubDeviceFlow(models.Model):
    """A GitHub OAuth device flow in progress. One pending flow per user session; the device code is encrypted."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="device_flows")
    session_key = models.CharField(max_length=64)
    device_code = encrypt(models.TextField())
    user_code = models.CharField(max_length=32)
    verification_uri = models.URLField()
    interval = models.PositiveIntegerField(default=5)
    expires_at = models.DateTimeField()
    next_poll_at = models.DateTimeField()
    status = models.CharField(max_length=16, choices=DeviceFlowStatus.choices, default=DeviceFlowStatus.PENDING)
    message = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "GitHub device flow"
        verbose_name_plural = "GitHub device flows"
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "session_key"],
                condition=Q(status="pending"),
                name="one_pending_device_flow_per_session",
            )
        ]

    def __str__(self) -> str:
        return f"device flow {self.user_code} ({self.status})"


class KeyCanary(models.Model):
    """A random value written under the store's key when the database is migrated (``secrets_app.key_canary``).
    Rotation re-encrypts it with every other encrypted column; a process whose ANYON_SECRET_KEY cannot decrypt it
    cannot decrypt the store (``doctor``: "secret store")."""

    value = encrypt(models.TextField())
    digest = models.CharField(max_length=64, help_text="SHA-256 of the value: a decrypt must give back exactly it")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "secret key canary"

    def __str__(self) -> str:
        return f"key canary {self.pk}"
