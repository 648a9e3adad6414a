"""Reads of tasks and attempts, and where an attempt may be placed. Ownership is part of every lookup: another
user's object is simply not found."""

from __future__ import annotations

from django.conf import settings
from django.db.models import Count, Q, QuerySet, Sum

from execution.logs.selectors import log_removed_note
from execution.models import (
    ACTIVE_STATUSES,
    Attempt,
    AttemptJob,
    AttemptStatus,
    JobStatus,
    Run,
    RunKind,
    Task,
    ToolOutput,
)


def tasks_for(*, user) -> QuerySet[Task]:
    return Task.objects.filter(owner=user).annotate(attempt_count=Count("attempts"))


def task_for(*, user, task_id: int) -> Task:
    return Task.objects.get(pk=task_id, owner=user)


def _viewable_by(user):
    """The attempts ``user`` may see: their own; staff every attempt."""
    return Attempt.objects.all() if user.is_staff else Attempt.objects.filter(task__owner=user)


def attempt_for(*, user, attempt_id: int) -> Attempt:
    """The attempt if ``user`` owns it (staff may see every attempt); else ``Attempt.DoesNotExist``."""
    return _viewable_by(user).select_related("task", "task__owner").get(pk=attempt_id)


def may_view_attempt(*, user, attempt_id: int) -> bool:
    """Whether ``attempt_for`` would find it, without reading the row: a live viewer's connect asks only this (the
    attempt's diff and its task's prompt can be megabytes)."""
    return _viewable_by(user).filter(pk=attempt_id).exists()


def egress_block_count(*, attempt: Attempt) -> int:
    """How many connections the egress proxy refused for this attempt (sealed runs), repeats included."""
    return attempt.egress_blocks.aggregate(total=Sum("count"))["total"] or 0


def network_blocks(attempt: Attempt) -> list[dict]:
    """The attempt's refusals by the egress proxy (at most ``MAX_BLOCK_ROWS`` rows and the overflow row), each with
    what its owner asked for that host and port ("allow for this attempt"): for the page and its live updates."""
    asked = {
        (host, port): {"state": state, "detail": detail, "by": by or ""}
        for host, port, state, detail, by in attempt.network_allowances.order_by("id").values_list(
            "host", "port", "state", "detail", "allowed_by__username"
        )
    }
    return [
        {
            "id": pk,
            "host": host,
            "port": port,
            "method": method,
            "path": path,
            "reason": reason,
            "count": count,
            "allowance": asked.get((host, port)),
        }
        for pk, host, port, method, path, reason, count in attempt.egress_blocks.values_list(
            "pk", "host", "port", "method", "path", "reason", "count"
        )
    ]


def network_record_rows(attempt: Attempt) -> list[dict]:
    """The stored network record's hosts, busiest first, with the refusals counted per host."""
    record = attempt.network_record or {}
    rows = [dict(use) for use in record.get("hosts", [])]
    rows.sort(key=lambda r: (-(r.get("requests", 0) + r.get("tunnels", 0)), r["host"], r["port"]))
    return rows


def own_attempt_for(*, user, attempt_id: int) -> Attempt:
    """The attempt if ``user`` owns it, staff or not: what acts with the owner's credentials (a follow-up, a pull
    request) or removes the owner's work may only be asked for by the owner."""
    return Attempt.objects.select_related("task", "task__owner").get(pk=attempt_id, task__owner=user)


def attempt_is_working(attempt: Attempt) -> bool:
    """Queued or running, itself or one of its jobs: its workspace and container are in use."""
    return attempt.is_active or attempt.jobs.filter(status__in=[JobStatus.QUEUED, JobStatus.RUNNING]).exists()


def active_jobs(attempt: Attempt) -> list:
    return list(attempt.jobs.filter(status__in=[JobStatus.QUEUED, JobStatus.RUNNING]))


def cancel_requested(*, attempt: Attempt, job: AttemptJob | None) -> bool:
    """Whether the user asked to cancel the job, when there is one, else the attempt (read from the database: a
    running session asks while it works)."""
    if job is not None:
        return AttemptJob.objects.filter(pk=job.pk, cancel_requested=True).exists()
    return Attempt.objects.filter(pk=attempt.pk, cancel_requested=True).exists()


def last_agent_session_id(*, attempt: Attempt) -> str:
    """The Claude session id of the attempt's latest agent run that recorded one (a follow-up resumes it), or ``""``."""
    return (
        Run.objects.filter(attempt=attempt, kind=RunKind.AGENT)
        .exclude(session_id="")
        .order_by("-id")
        .values_list("session_id", flat=True)
        .first()
    ) or ""


def attempt_badge(attempt: Attempt, jobs: list[tuple[str, str]]) -> dict[str, str]:
    """The state a page shows for the attempt: its own while it runs, else a queued or running job's (a follow-up
    or a pull request), else its own final one. ``jobs``: ``(kind, status)`` pairs."""
    from execution.models import JobKind

    if not attempt.is_active:
        for kind, status in jobs:
            if status in (JobStatus.QUEUED, JobStatus.RUNNING):
                return {"status": status, "label": f"{JobKind(kind).label} {JobStatus(status).label.lower()}"}
    return {"status": attempt.status, "label": attempt.get_status_display()}


def attempts_starting(*, queue: str) -> bool:
    """Attempts of ``queue`` on their way to their first step: waiting for a worker (with their queue task) or
    provisioning. Background work of the host (pool refill, container removal) yields to them."""
    starting = Q(status=AttemptStatus.QUEUED, waiting_for_slot=False) | Q(status=AttemptStatus.PROVISIONING)
    return Attempt.objects.filter(starting, queue=queue).exists()


def attempts_ahead(attempt: Attempt) -> int:
    """For an attempt waiting for a slot (``ANYON_MAX_ACTIVE_ATTEMPTS_PER_USER``): how many of its owner's attempts
    go before it, the ones it waits for included. 0 for any other attempt."""
    if not attempt.waiting_for_slot or attempt.status != AttemptStatus.QUEUED:
        return 0
    return (
        Attempt.objects.filter(task__owner_id=attempt.task.owner_id, status__in=ACTIVE_STATUSES)
        .filter(Q(waiting_for_slot=False) | Q(pk__lt=attempt.pk))
        .count()
    )


def waiting_note(attempt: Attempt) -> str:
    """What the attempt page says about a waiting attempt ("" for any other)."""
    ahead = attempts_ahead(attempt)
    if not ahead:
        return ""
    return (
        f"Queued behind your other attempts ({ahead} ahead of it; at most "
        f"{settings.ANYON_MAX_ACTIVE_ATTEMPTS_PER_USER} of yours run at once). It starts by itself."
    )


def tool_output_for(*, user, attempt_id: int, run_id: int, number: int) -> ToolOutput:
    """A whole tool output of an attempt ``user`` may see (``attempt_for``'s rule: the owner, or staff); else
    ``ToolOutput.DoesNotExist``."""
    return ToolOutput.objects.get(
        attempt__in=_viewable_by(user).values("pk"), attempt_id=attempt_id, run_id=run_id, number=number
    )


#: The attempt's own fields that :func:`attempt_snapshot` shows (besides its runs and jobs): a change to any other
#: (its container, volume, secret dir, activity time) does not wake its viewers, whose tail would read it for nothing.
SNAPSHOT_FIELDS = frozenset(
    {
        "status",
        "error",
        "head_commit",
        "push_summary",
        "pr_url",
        "waiting_for_slot",
        "log_chars",
        "log_cut_at_seq",
        "log_removed_at",
        "log_summary",
        "started_at",
        "finished_at",
    }
)


def attempt_snapshot(attempt: Attempt) -> dict:
    """What a live viewer needs to show the attempt's state (sent over the websocket)."""
    # Read on every status change of every watched attempt: columns only, not the runs' argv (JSON) and errors.
    runs = [
        {
            "id": pk,
            "kind": kind,
            "title": title,
            "status": status,
            "exit_code": exit_code,
            "duration": (finished - started).total_seconds() if finished else None,
        }
        for pk, kind, title, status, exit_code, started, finished in attempt.runs.values_list(
            "pk", "kind", "title", "status", "exit_code", "started_at", "finished_at"
        )
    ]
    jobs = [
        {"id": pk, "kind": kind, "status": status, "error": error}
        for pk, kind, status, error in attempt.jobs.values_list("pk", "kind", "status", "error")
    ]
    return {
        "id": attempt.pk,
        "status": attempt.status,
        "error": attempt.error,
        "active": attempt.is_active or any(j["status"] in ("queued", "running") for j in jobs),
        "badge": attempt_badge(attempt, [(j["kind"], j["status"]) for j in jobs]),
        "jobs": jobs,
        "head_commit": attempt.head_commit,
        "push": push_view(attempt),
        "pr_url": attempt.pr_url,
        "waiting": waiting_note(attempt),
        "log_chars": attempt.log_chars,
        "log_cut_at_seq": attempt.log_cut_at_seq,
        "log_removed": log_removed_note(attempt),
        "duration": attempt.duration.total_seconds() if attempt.duration else None,
        "runs": runs,
        "blocks": network_blocks(attempt),
    }


def push_view(attempt: Attempt) -> dict:
    """What the attempt page shows of the push: the branch, sentences and the commits (``{}`` before they are known).
    Every text in it is the agent's or derived from it: the page and the live script show it escaped only."""
    from execution.git.commit_list import notes

    summary = attempt.push_summary or {}
    if not summary:
        return {}
    return {**summary, "notes": notes(summary)}


def host_rows() -> list[dict]:
    """Every Docker host the installation knows (a worker reported it, or ANYON_WORKER_QUEUES names it), its state
    and how many attempts run there: for ``doctor``, the admin dashboard and placement."""
    from datetime import timedelta

    from django.conf import settings
    from django.db.models import Count
    from django.utils import timezone

    from execution.models import ACTIVE_STATUSES, DockerHost, HostState

    now, lost_after = timezone.now(), timedelta(seconds=settings.ANYON_HOST_LOST_SECONDS)
    running = dict(
        Attempt.objects.filter(status__in=ACTIVE_STATUSES, waiting_for_slot=False)
        .values("queue")
        .annotate(n=Count("pk"))
        .values_list("queue", "n")
    )
    hosts = {host.name: host for host in DockerHost.objects.all()}
    names = list(dict.fromkeys([*settings.ANYON_WORKER_QUEUES, *hosts]))
    rows = []
    for name in names:
        host = hosts.get(name)
        rows.append(
            {
                "name": name,
                "host": host,
                "state": (state := host.state(now, lost_after) if host else HostState.UNKNOWN),
                "label": str(state).replace("_", " "),
                "healthy": state == HostState.HEALTHY,
                "active": running.get(name, 0),
            }
        )
    return rows


def placeable_queues(queues: list[str]) -> list[str]:
    """The queues of ``queues`` that may take a new attempt: healthy hosts, and queues no worker has reported yet
    (a fresh installation). When none may, all of them: the attempt waits queued for a host to come back."""
    from execution.models import HostState

    states = {row["name"]: row["state"] for row in host_rows()}
    usable = [q for q in queues if states.get(q, HostState.UNKNOWN) in (HostState.HEALTHY, HostState.UNKNOWN)]
    return usable or list(queues)
