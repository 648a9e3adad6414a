"""The Docker hosts' records (``DockerHost``): what each worker reports about its engine, draining, and the words
used when a host goes away. Placement reads them through ``execution.attempts.selectors.placeable_queues``."""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from execution.attempts.actions import do_transition
from execution.attempts.runs import do_finish_job
from execution.logs.writer import LogWriter
from execution.models import Attempt, AttemptJob, AttemptStatus, DockerHost, JobStatus, LogStream
from shared.alerts import AlertKind, do_raise_alert

logger = logging.getLogger(__name__)


def host_went_away(name: str, detail: str = "") -> str:
    """The error an attempt ends with when its engine stops answering under it."""
    text = f"The Docker host went away: the engine of host {name} stopped answering during the attempt"
    return text + (f" ({detail[:300]})." if detail else ".") + " Start a new attempt: it goes to a healthy host."


def worker_lost(name: str, worker: str, since) -> str:
    """The error an attempt ends with when its host's worker stops heartbeating (killed, its machine gone)."""
    when = f"{since:%Y-%m-%d %H:%M:%S} UTC" if since else "never"
    return (
        f"The worker of Docker host {name} ({worker or '?'}) stopped: no heartbeat since {when}. The attempt was "
        "ended by another host's worker; its container is removed when host " + name + " comes back."
    )


def do_host_heartbeat(
    *, name: str, docker_host: str, worker: str, engine_ok: bool, engine_error: str = "", engine_version: str = ""
) -> bool | None:
    """This worker's host is alive; whether its engine answered. Returns the engine state recorded before (None
    for a host never seen), so the caller notices an engine going away or coming back."""
    now = timezone.now()
    fields = {"docker_host": docker_host, "worker": worker, "engine_ok": engine_ok, "heartbeat_at": now}
    fields["engine_error"] = "" if engine_ok else engine_error[:500]
    if engine_ok:
        fields.update(engine_seen_at=now, engine_version=engine_version[:40])
    with transaction.atomic():
        before = DockerHost.objects.select_for_update().filter(name=name).values_list("engine_ok", flat=True).first()
        DockerHost.objects.update_or_create(name=name, defaults=fields)
    return before


def do_end_work_of_lost_host(*, host: DockerHost, cutoff) -> list[str]:
    """End the attempts and jobs of a host whose worker stopped heartbeating before ``cutoff`` (that worker cannot
    end them itself), each with a system line saying why, and raise one ``worker_lost`` alert naming them: in one
    transaction, so nobody sees the attempts ended without the alert (or the alert for attempts still running).
    Returns what it ended ("attempt 12", "job 3")."""
    reason, ended = worker_lost(host.name, host.worker, host.heartbeat_at), []
    silent = Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True)
    working = [AttemptStatus.PROVISIONING, AttemptStatus.RUNNING]
    with transaction.atomic():
        for attempt in Attempt.objects.filter(silent, queue=host.name, status__in=working).select_related("task"):
            if not do_transition(attempt=attempt, to=AttemptStatus.FAILED, error=reason):
                continue
            writer = LogWriter(attempt.pk)  # inside the transaction it inserts inline
            writer.write(None, LogStream.SYSTEM, reason + "\n")
            writer.close()
            ended.append(f"attempt {attempt.pk}")
        for job in AttemptJob.objects.filter(attempt__queue=host.name, status=JobStatus.RUNNING):
            do_finish_job(job=job, status=JobStatus.FAILED, error=reason)
            ended.append(f"job {job.pk}")
        if ended:
            do_raise_alert(
                kind=AlertKind.WORKER_LOST,
                message=f"Docker host {host.name}: {reason} Ended: {', '.join(ended)[:1000]}",
                dedupe_key=f"worker_lost:{host.name}",
            )
    return ended


def do_mark_engine_lost(*, name: str, detail: str, attempt=None) -> None:
    """The engine of ``name`` stopped answering: recorded at once (no new attempt goes there) and alerted once,
    by whoever records it first (one of the sessions it ended, or the host's heartbeat)."""
    with transaction.atomic():
        flipped = DockerHost.objects.filter(name=name, engine_ok=True).update(
            engine_ok=False, engine_error=detail[:500]
        )
    if flipped:
        alert_engine_lost(name=name, detail=detail, attempt=attempt)


def alert_engine_lost(*, name: str, detail: str, attempt=None) -> None:
    do_raise_alert(
        kind=AlertKind.DOCKER_HOST_LOST,
        message=f"Docker host {name}: its engine stopped answering ({detail[:300]}); its running attempts end "
        "failed and new attempts go to the other hosts until it answers again",
        attempt=attempt,
        dedupe_key=f"docker_host_lost:{name}",
    )


def do_set_draining(*, names: list[str], draining: bool, by: str) -> int:
    """Drain hosts (no new attempts; running ones finish) or put them back in service. Returns how many changed."""
    with transaction.atomic():
        changed = DockerHost.objects.filter(name__in=names).exclude(draining=draining).update(draining=draining)
    logger.warning("hosts %s %s by %s", ", ".join(names), "drained" if draining else "back in service", by)
    return changed
