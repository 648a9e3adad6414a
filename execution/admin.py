"""The ops console for runs: tasks, attempts (with bulk delete of their containers and workspaces), alerts."""

from __future__ import annotations

from django.contrib import admin, messages

from execution.attempts import AttemptBusy, do_delete_attempt
from execution.docker_harness import HarnessError
from execution.models import Alert, Attempt, AttemptJob, Run, Task


class RunInline(admin.TabularInline):
    model = Run
    fields = ("kind", "title", "status", "exit_code", "started_at", "finished_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = ("id", "title", "owner", "repo_url", "base_branch", "created_at")
    search_fields = ("title", "repo_url", "owner__username")
    readonly_fields = ("owner", "created_at", "updated_at")


@admin.register(Attempt)
class AttemptAdmin(admin.ModelAdmin):
    list_display = ("id", "task", "owner", "status", "worker", "started_at", "finished_at", "pr_number")
    list_filter = ("status",)
    search_fields = ("task__title", "task__owner__username", "container_id")
    readonly_fields = (
        "task", "status", "container_id", "workspace_volume", "branch", "error", "worker", "heartbeat_at",
        "base_commit", "head_commit", "pr_number", "pr_url", "pr_state", "created_at", "started_at",
        "finished_at", "last_activity_at",
    )  # fmt: skip
    exclude = ("plan", "diff", "cancel_requested", "diff_truncated")
    inlines = [RunInline]
    actions = ["delete_with_resources"]

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # deleting rows alone would orphan containers and volumes
        return actions

    def has_add_permission(self, request) -> bool:
        return False

    @admin.display(description="owner")
    def owner(self, obj: Attempt):
        return obj.task.owner

    @admin.action(description="Delete selected attempts with their containers, workspaces and secret dirs")
    def delete_with_resources(self, request, queryset) -> None:
        deleted, refused = 0, []
        for attempt in queryset.select_related("task"):
            try:
                do_delete_attempt(attempt=attempt, by=f"staff:{request.user.get_username()}")
                deleted += 1
            except (AttemptBusy, HarnessError) as exc:
                refused.append(f"#{attempt.pk}: {exc}")
        self.message_user(request, f"Deleted {deleted} attempt(s).", messages.SUCCESS)
        for line in refused:
            self.message_user(request, line, messages.WARNING)


@admin.register(AttemptJob)
class AttemptJobAdmin(admin.ModelAdmin):
    list_display = ("id", "attempt", "kind", "status", "created_at", "finished_at")
    list_filter = ("kind", "status")
    readonly_fields = ("attempt", "kind", "prompt", "status", "error", "created_at", "finished_at")


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = ("last_seen", "kind", "severity", "count", "message", "attempt", "user", "acknowledged_at")
    list_filter = ("kind", "severity")
    search_fields = ("message", "fingerprint")
    readonly_fields = (
        "kind", "severity", "message", "attempt", "user", "fingerprint", "count", "first_seen", "last_seen",
        "acknowledged_by", "acknowledged_at", "delivery",
    )  # fmt: skip
