"""The alerts of the ops console: read-only, acknowledged in bulk."""

from __future__ import annotations

from django.contrib import admin, messages

from shared.alerts import do_acknowledge_alerts
from shared.models import Alert


class AcknowledgedFilter(admin.SimpleListFilter):
    title = "acknowledged"
    parameter_name = "acknowledged"

    def lookups(self, request, model_admin):
        return [("no", "Open"), ("yes", "Acknowledged")]

    def queryset(self, request, queryset):
        if self.value() == "no":
            return queryset.filter(acknowledged_at__isnull=True)
        if self.value() == "yes":
            return queryset.filter(acknowledged_at__isnull=False)
        return queryset


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = ("last_seen", "kind", "severity", "count", "message", "attempt_id", "user", "acknowledged_at")
    list_filter = (AcknowledgedFilter, "kind", "severity")
    actions = ["acknowledge"]
    search_fields = ("message", "dedupe_key")
    readonly_fields = (
        "kind", "severity", "message", "attempt_id", "user", "dedupe_key", "count", "first_seen", "last_seen",
        "acknowledged_by", "acknowledged_at", "delivery",
    )  # fmt: skip

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description="Acknowledge selected alerts")
    def acknowledge(self, request, queryset) -> None:
        count = do_acknowledge_alerts(alerts=queryset, by=request.user)
        self.message_user(request, f"Acknowledged {count} alert(s).", messages.SUCCESS)
