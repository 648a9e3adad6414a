# Long because every model of the app has its console here, where Django looks for it, with the deletes they share.
"""The ops console for runs: tasks, attempts (deleted only through their actions), hosts, the warm pool, snapshots."""

from __future__ import annotations

import copy

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Sum
from django.http import HttpResponseRedirect
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from execution.attempts.actions import (
    AttemptBusy,
    do_cancel_attempt,
    do_clean_up_attempt,
    do_request_delete_attempt,
    do_request_delete_task,
    local_queue,
)
from execution.attempts.selectors import attempt_is_working
from execution.hosts.actions import do_set_draining
from execution.logs.selectors import log_removed_note
from execution.models import (
    Attempt,
    AttemptJob,
    DockerHost,
    LogRecord,
    NetworkAllowance,
    PoolContainer,
    Run,
    Snapshot,
    Task,
)
from execution.prompts import printable
from execution.snapshots.actions import do_drop_snapshot, engine_if_reachable
from execution.sweeps.log_retention import do_drop_attempt_log
from shared.docker.engine import DockerEngine, EngineError

LOG_CHARS_IN_ADMIN = 50_000


class RunInline(admin.TabularInline):
    model = Run
    fields = ("kind", "title", "status", "exit_code", "started_at", "finished_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False  # runs are what a worker executed: the record of it, never typed in


@admin.display(description="prompt")
def prompt_as_written(obj: Task | AttemptJob) -> str:
    """Read only: it is what the attempts ran (a form would also turn a NUL into U+FFFD on save)."""
    return printable(obj.prompt)


class DeletesThroughActions(admin.ModelAdmin):
    """Every delete the admin offers (the object's delete page, "Delete selected" and their confirmation pages)
    goes through the model's delete action, as the product's own pages do: containers, volumes and secret dirs
    are removed first, and a working attempt is refused. Django's own paths would delete rows alone."""

    #: Shown on the confirmation pages.
    delete_note = ""

    def request_delete(self, obj, *, by: str) -> bool:
        """Delete through the action; True when gone now, False when queued on another host's worker. Raises
        ``AttemptBusy`` or ``EngineError`` when refused."""
        raise NotImplementedError

    def working(self, obj) -> list[int]:
        """The attempts that keep ``obj`` from being deleted now (shown on the confirmation pages)."""
        raise NotImplementedError

    def _delete_one(self, request, obj) -> str | None:
        """Delete ``obj`` through the action and log it; the refusal's reason, or None."""
        record = copy.copy(obj)  # the log entry needs the pk the deletion clears
        try:
            now = self.request_delete(obj, by=f"staff:{request.user.get_username()}")
        except (AttemptBusy, EngineError) as exc:
            return f"{obj}: {exc}"
        self.log_deletions(request, [record])
        return None if now else ""

    def delete_model(self, request, obj) -> None:
        reason = self._delete_one(request, obj)
        if reason:
            raise AttemptBusy(reason)

    def delete_queryset(self, request, queryset) -> None:
        for obj in queryset:
            self.delete_model(request, obj)

    def delete_view(self, request, object_id, extra_context=None):
        obj = self.get_object(request, unquote(object_id))
        if request.method != "POST" or obj is None:
            context = {**(extra_context or {}), "delete_note": self.delete_note}
            if obj is not None:
                context["working_attempts"] = self.working(obj)
            return super().delete_view(request, object_id, context)
        if not self.has_delete_permission(request, obj):
            raise PermissionDenied
        opts = self.opts
        reason = self._delete_one(request, obj)
        if reason:
            self.message_user(request, f"Not deleted: {reason}", messages.ERROR)
            return HttpResponseRedirect(reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk]))
        done = "deleted with its containers, volumes and secret dirs" if reason is None else "queued for deletion"
        self.message_user(request, f"{opts.verbose_name.capitalize()} {obj}: {done}.", messages.SUCCESS)
        return HttpResponseRedirect(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))

    @admin.action(description="Delete selected %(verbose_name_plural)s", permissions=["delete"])
    def delete_selected(self, request, queryset):
        """Django's confirmation page; the confirmed deletion goes through the action, one object at a time."""
        if not request.POST.get("post"):
            response = django_delete_selected(self, request, queryset)
            if response is not None and hasattr(response, "context_data"):
                response.context_data["delete_note"] = self.delete_note
                response.context_data["working_attempts"] = [pk for obj in queryset for pk in self.working(obj)]
            return response
        deleted, queued, refused = 0, 0, []
        for obj in queryset:
            reason = self._delete_one(request, obj)
            if reason:
                refused.append(reason)
            elif reason is None:
                deleted += 1
            else:
                queued += 1
        plural = self.opts.verbose_name_plural
        self.message_user(
            request,
            f"Deleted {deleted} {plural} with their containers, volumes and secret dirs"
            + (f"; {queued} queued on their own Docker hosts." if queued else "."),
            messages.SUCCESS,
        )
        for line in refused:
            self.message_user(request, f"Not deleted: {line}", messages.WARNING)
        return None


@admin.register(Task)
class TaskAdmin(DeletesThroughActions):
    list_display = ("id", "title", "owner", "repo_url", "base_branch", "created_at")
    search_fields = ("title", "repo_url", "owner__username")
    exclude = ("prompt",)
    # The repository decides where the owner's token is sent: only the task page (which checks it) sets it.
    readonly_fields = ("owner", "repo_url", "base_branch", prompt_as_written, "created_at", "updated_at")

    actions = ["delete_selected"]
    delete_note = (
        "Each attempt of a task is deleted with its containers, workspace volumes and secret dir, then the task. "
        "A task with an attempt still working is not deleted: cancel the attempt first."
    )

    def has_add_permission(self, request) -> bool:
        return False  # a task is its owner's, made on the task page (repository URL and prompt checked there)

    def request_delete(self, obj: Task, *, by: str) -> bool:
        return do_request_delete_task(task=obj, by=by)

    def working(self, obj: Task) -> list[int]:
        return [a.pk for a in obj.attempts.all() if attempt_is_working(a)]


@admin.register(Attempt)
class AttemptAdmin(DeletesThroughActions):
    list_display = (
        "id", "task", "owner", "status", "host", "worker", "started_at", "duration_display", "pr_number",
        "egress_blocked",
    )  # fmt: skip
    list_filter = ("status", "queue", "task__owner", "created_at")
    date_hierarchy = "created_at"
    search_fields = ("task__title", "task__owner__username", "container_id")
    readonly_fields = (
        "task", "status", "host", "container", "workspace_volume", "branch", "error", "worker", "heartbeat_at",
        "base_commit", "head_commit", "pr_number", "pr_url", "pr_state", "created_at", "started_at",
        "finished_at", "last_activity_at", "egress_blocked", "log_retention", "masked_log",
    )  # fmt: skip
    exclude = ("plan", "diff", "cancel_requested", "diff_truncated", "log_summary", "log_removed_at")
    inlines = [RunInline]
    actions = ["cancel_selected", "cleanup_selected", "drop_logs_selected", "delete_selected"]
    delete_note = (
        "An attempt is deleted with its containers, workspace volumes and secret dir (on another Docker host, by "
        "a worker of that host). An attempt still working is not deleted: cancel it first."
    )

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(blocked_count=Sum("egress_blocks__count"))

    @admin.display(description="blocked connections", ordering="blocked_count")
    def egress_blocked(self, obj: Attempt) -> int:
        return obj.blocked_count or 0

    @admin.display(description="duration")
    def duration_display(self, obj: Attempt):
        return obj.duration or "—"

    @admin.display(description="Docker host", ordering="queue")
    def host(self, obj: Attempt) -> str:
        return obj.queue or "—"

    @admin.display(description="container")
    def container(self, obj: Attempt):
        """The container as the engine knows it now: running or stopped while it exists, plainly "removed" once
        it is gone (the id alone would read as a live container)."""
        if not obj.container_id:
            return "—"
        short = obj.container_id[:12]
        if not local_queue(obj):
            return f"{short} (on the Docker host of queue {obj.queue}; its state is not visible from here)"
        try:
            info = DockerEngine().inspect(obj.container_id)
        except EngineError:
            return f"{short} (state unknown: the Docker engine did not answer)"
        if info is None:
            return format_html('<span data-testid="container-removed">{} (removed)</span>', short)
        state = info.get("State") or {}
        return format_html('<span data-testid="container-live">{} ({})</span>', short, state.get("Status") or "exists")

    @admin.display(description="log retention")
    def log_retention(self, obj: Attempt):
        """Kept in full, or removed: when, after how many days, and the summary with the last lines of each step."""
        note = log_removed_note(obj)
        if not note:
            days = settings.ANYON_LOG_RETENTION_DAYS
            return f"full log kept ({f'removed {days} days after the attempt finishes' if days else 'forever'})"
        tails = format_html_join(
            "",
            '<p style="margin:8px 0 2px">{}: last {} lines</p><pre style="white-space:pre-wrap">{}</pre>',
            (
                (t["title"] if t["run"] else "Anyon", len(t["lines"]), "".join(line for _, line in t["lines"]))
                for t in obj.log_summary.get("tails", [])
            ),
        )
        return format_html('<p data-testid="admin-log-removed">{}</p>{}', note, tails)

    @admin.display(description="log (masked)")
    def masked_log(self, obj: Attempt):
        texts, size = [], 0
        for text in LogRecord.objects.filter(attempt=obj).order_by("-seq").values_list("text", flat=True):
            texts.append(text)
            size += len(text)
            if size > LOG_CHARS_IN_ADMIN:
                break
        body = "".join(reversed(texts))[-LOG_CHARS_IN_ADMIN:]
        return format_html('<pre style="max-height:420px;overflow:auto;white-space:pre-wrap">{}</pre>', body)

    @admin.action(description="Cancel selected attempts")
    def cancel_selected(self, request, queryset) -> None:
        active = [a for a in queryset if a.is_active]
        for attempt in active:
            do_cancel_attempt(attempt=attempt, by=f"staff:{request.user.get_username()}")
        self.message_user(request, f"Cancelling {len(active)} attempt(s).", messages.SUCCESS)

    @admin.action(description="Remove the full logs of selected finished attempts now (a summary stays)")
    def drop_logs_selected(self, request, queryset) -> None:
        dropped, busy = 0, 0
        for attempt in queryset:
            if not attempt.finished_at:
                busy += 1
                continue
            try:  # the page then says how many days after its end the log went
                days = (timezone.now() - attempt.finished_at).days
                dropped += bool(do_drop_attempt_log(attempt=attempt, days=days).records)
            except AttemptBusy:
                busy += 1
        self.message_user(
            request, f"Removed the full logs of {dropped} attempt(s); {busy} still working.", messages.SUCCESS
        )

    @admin.action(description="Clean up selected: remove leftover secret dirs and containers of finished attempts")
    def cleanup_selected(self, request, queryset) -> None:
        cleaned, elsewhere = 0, [a.pk for a in queryset if not local_queue(a)]
        try:
            engine = DockerEngine()
            for attempt in queryset:
                if local_queue(attempt):  # another host's engine is not reachable from here: its sweeps clean it
                    cleaned += do_clean_up_attempt(attempt=attempt, engine=engine)
        except EngineError as exc:
            self.message_user(request, f"Stopped after {cleaned} attempt(s): {exc}", messages.ERROR)
            return
        self.message_user(request, f"Cleaned {cleaned} finished attempt(s).", messages.SUCCESS)
        if elsewhere:
            self.message_user(
                request, f"Left to their own hosts' cleanup sweeps: {', '.join(map(str, elsewhere))}", messages.WARNING
            )

    def has_add_permission(self, request) -> bool:
        return False

    @admin.display(description="owner")
    def owner(self, obj: Attempt):
        return obj.task.owner

    def request_delete(self, obj: Attempt, *, by: str) -> bool:
        return do_request_delete_attempt(attempt=obj, by=by)

    def working(self, obj: Attempt) -> list[int]:
        return [obj.pk] if attempt_is_working(obj) else []


@admin.register(AttemptJob)
class AttemptJobAdmin(admin.ModelAdmin):
    list_display = ("id", "attempt", "kind", "status", "created_at", "finished_at")
    list_filter = ("kind", "status")
    exclude = ("prompt",)
    readonly_fields = ("attempt", "kind", prompt_as_written, "status", "error", "created_at", "finished_at")

    def has_add_permission(self, request) -> bool:
        return False  # jobs are queued from the attempt page, which checks the attempt is idle


@admin.register(NetworkAllowance)
class NetworkAllowanceAdmin(admin.ModelAdmin):
    """Who allowed which host for which attempt ("allow for this attempt"): an audit, read only."""

    list_display = ("id", "attempt", "host", "port", "allowed_by", "state", "created_at")
    list_filter = ("state",)
    readonly_fields = ("attempt", "host", "port", "allowed_by", "state", "detail", "created_at", "decided_at")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(DockerHost)
class DockerHostAdmin(admin.ModelAdmin):
    """Every Docker host its workers reported: state, running attempts, and draining for maintenance."""

    list_display = ("name", "state_display", "active_attempts", "draining", "docker_host", "worker", "heartbeat_at")
    readonly_fields = (
        "name", "docker_host", "worker", "engine_ok", "engine_error", "engine_version", "draining", "heartbeat_at",
        "engine_seen_at",
    )  # fmt: skip
    actions = ["drain_selected", "undrain_selected"]

    def get_queryset(self, request):
        from django.db.models import OuterRef, Subquery
        from django.db.models.functions import Coalesce

        from execution.models import ACTIVE_STATUSES

        active = (
            Attempt.objects.filter(queue=OuterRef("name"), status__in=ACTIVE_STATUSES, waiting_for_slot=False)
            .values("queue")
            .annotate(n=Count("pk"))
            .values("n")
        )
        return super().get_queryset(request).annotate(active_count=Coalesce(Subquery(active), 0))

    @admin.display(description="state")
    def state_display(self, obj: DockerHost):
        from datetime import timedelta

        from django.conf import settings
        from django.utils import timezone

        state = obj.state(timezone.now(), timedelta(seconds=settings.ANYON_HOST_LOST_SECONDS))
        detail = f": {obj.engine_error}" if state == "engine_down" and obj.engine_error else ""
        return format_html('<span data-testid="host-state-{}">{}{}</span>', obj.name, state.replace("_", " "), detail)

    @admin.display(description="active attempts", ordering="active_count")
    def active_attempts(self, obj: DockerHost):
        url = f"../attempt/?queue={obj.name}&status__in=queued,provisioning,running"
        return format_html('<a href="{}">{}</a>', url, obj.active_count)

    def has_add_permission(self, request) -> bool:
        return False  # a host appears when its worker first reports

    @admin.action(description="Drain selected hosts: no new attempts; running ones finish")
    def drain_selected(self, request, queryset) -> None:
        names = list(queryset.values_list("name", flat=True))
        do_set_draining(names=names, draining=True, by=f"staff:{request.user.get_username()}")
        self.message_user(request, f"Draining {', '.join(names)}: new attempts go elsewhere.", messages.SUCCESS)

    @admin.action(description="Put selected hosts back in service")
    def undrain_selected(self, request, queryset) -> None:
        names = list(queryset.values_list("name", flat=True))
        do_set_draining(names=names, draining=False, by=f"staff:{request.user.get_username()}")
        self.message_user(request, f"{', '.join(names)} take new attempts again.", messages.SUCCESS)


@admin.register(PoolContainer)
class PoolContainerAdmin(admin.ModelAdmin):
    """The warm pool, to look at: the refill makes and retires these, a claim takes them."""

    list_display = ("name", "queue", "created_at", "workspace_volume", "secret_dir")
    list_filter = ("queue",)
    readonly_fields = ("queue", "container_id", "name", "workspace_volume", "secret_dir", "fingerprint", "created_at")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # the row alone would leave its container, volumes and secret dir: the refill retires them


@admin.register(Snapshot)
class SnapshotAdmin(admin.ModelAdmin):
    """Every user's snapshots: staff see their size and use and drop them (image and row, one or in bulk)."""

    list_display = ("id", "owner", "repo_url", "queue", "size_display", "hits", "created_at", "last_used_at")
    list_filter = ("queue",)
    search_fields = ("repo_url", "owner__username")
    readonly_fields = [field.name for field in Snapshot._meta.fields]
    actions = ["drop_selected"]

    @admin.display(description="size", ordering="size_bytes")
    def size_display(self, obj: Snapshot) -> str:
        return filesizeformat(obj.size_bytes)

    def has_add_permission(self, request) -> bool:
        return False  # made by a worker after a setup

    def delete_model(self, request, obj: Snapshot) -> None:
        """The delete page and "Delete selected" drop through the action too: image and row."""
        do_drop_snapshot(snapshot=obj, engine=engine_if_reachable())

    def delete_queryset(self, request, queryset) -> None:
        engine = engine_if_reachable()
        for snapshot in queryset:
            do_drop_snapshot(snapshot=snapshot, engine=engine)

    @admin.action(description="Drop the selected snapshots (image and row)")
    def drop_selected(self, request, queryset) -> None:
        engine = engine_if_reachable()
        snapshots = list(queryset)
        for snapshot in snapshots:
            do_drop_snapshot(snapshot=snapshot, engine=engine)
        self.message_user(request, f"Dropped {len(snapshots)} snapshot(s).", messages.SUCCESS)
