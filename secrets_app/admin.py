"""Staff see secret metadata and the access trail, read-only. No plaintext, no ciphertext, no way to reveal."""

from __future__ import annotations

from django.contrib import admin, messages

from secrets_app.models import GitHubDeviceFlow, Secret, SecretAccess, SecretState
from secrets_app.secret_store import do_revoke_secret


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Secret)
class SecretAdmin(ReadOnlyAdmin):
    list_display = (
        "id", "owner", "provider", "kind", "masked", "account_login", "state", "expires_at", "last_validated_at",
        "created_at",
    )  # fmt: skip
    list_filter = ("provider", "kind", "state")
    search_fields = ("owner__username", "account_login")
    # ``value`` is deliberately absent: it is neither shown nor loaded.
    fields = (
        "owner", "provider", "kind", "masked", "account_login", "scopes", "note", "state", "state_reason",
        "expires_at", "last_validated_at", "created_at", "updated_at",
    )  # fmt: skip
    readonly_fields = fields
    actions = ["revoke_selected"]

    def get_queryset(self, request):
        return super().get_queryset(request).defer("value").select_related("owner")

    @admin.display(description="credential")
    def masked(self, obj: Secret) -> str:
        return f"••••{obj.fingerprint}" if obj.fingerprint else "••••"

    @admin.action(description="Revoke selected secrets", permissions=["view"])
    def revoke_selected(self, request, queryset) -> None:
        count = 0
        for secret in queryset.filter(state=SecretState.ACTIVE):
            do_revoke_secret(secret=secret, actor=f"staff:{request.user.get_username()}", reason="revoked")
            count += 1
        self.message_user(request, f"Revoked {count} secret(s).", messages.SUCCESS)


@admin.register(SecretAccess)
class SecretAccessAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "owner", "provider", "secret_id", "actor", "purpose", "attempt_id", "outcome")
    list_filter = ("outcome", "provider")
    search_fields = ("owner__username", "actor", "purpose")
    date_hierarchy = "created_at"


@admin.register(GitHubDeviceFlow)
class GitHubDeviceFlowAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "owner", "user_code", "status", "message", "expires_at")
    list_filter = ("status",)
    fields = ("owner", "user_code", "verification_uri", "interval", "status", "message", "expires_at", "created_at")
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).defer("device_code")
