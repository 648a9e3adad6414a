"""Alerts: what an operator should know about. No I/O here: they are raised through ``shared.alerts``."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class AlertSeverity(models.TextChoices):
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    ERROR = "error", "Error"
    CRITICAL = "critical", "Critical"


class Alert(models.Model):
    """One kind of problem. The same ``dedupe_key`` within ``ANYON_ALERT_WINDOW`` counts up instead of repeating.

    ``attempt_id`` names the attempt it is about without a foreign key: this layer sits below the app that owns
    attempts, and an alert outlives the attempt it names (the admin shows a deleted one as such)."""

    kind = models.CharField(max_length=64, db_index=True)
    severity = models.CharField(max_length=16, choices=AlertSeverity.choices, default=AlertSeverity.ERROR)
    message = models.TextField()
    attempt_id = models.PositiveBigIntegerField(null=True, blank=True, db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts"
    )
    dedupe_key = models.CharField(max_length=200, db_index=True)
    count = models.PositiveIntegerField(default=1)
    first_seen = models.DateTimeField(auto_now_add=True)
    last_seen = models.DateTimeField(auto_now_add=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    delivery = models.JSONField(default=dict, blank=True, help_text="Delivery status per notifier destination.")

    class Meta:
        ordering = ["-last_seen", "-id"]

    def __str__(self) -> str:
        return f"[{self.severity}] {self.kind}: {self.message[:60]}"
