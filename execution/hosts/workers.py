"""Worker processes and the work they hold (docs/ARCHITECTURE.md, "Lost workers")."""

from __future__ import annotations

import functools
import logging
import os
import secrets
import socket
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from execution.attempts.actions import do_clean_up_attempt, do_transition, local_queue
from execution.attempts.runs import do_finish_job
from execution.logs.writer import LogWriter
from execution.models import Attempt, AttemptJob, AttemptStatus, JobStatus, LogStream, WorkerProcess
from shared.alerts import AlertKind, do_raise_alert

logger = logging.getLogger(__name__)

WORKING = (AttemptStatus.PROVISIONING, AttemptStatus.RUNNING)


@functools.cache
def _identity(pid: int) -> str:
    return f"{socket.gethostname()}:{pid}:{secrets.token_hex(4)}"


def worker_identity() -> str:
    """This process as attempts name it: host and pid, plus a nonce, so a later process that gets the same pid
    (a restarted container numbers its processes alike) is never taken for this one."""
    return _identity(os.getpid())


@functools.cache
def machine() -> str:
    """Where a pid names this process: the boot (a reboot reuses pids) and the pid namespace (a container's)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return f"{socket.gethostname()}:unknown"
    return f"{boot}:{namespace}"[:120]


def pid_exists(pid: int) -> bool:
    """Whether a process ``pid`` lives here (a zombie, killed and not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def do_worker_heartbeat(*, started_at=None) -> None:
    """This worker process is alive (its row, made at its first beat)."""
    now = timezone.now()
    with transaction.atomic():
        if not WorkerProcess.objects.filter(name=worker_identity()).update(heartbeat_at=now):
            WorkerProcess.objects.create(
                name=worker_identity(),
                queue=settings.ANYON_WORKER_QUEUE,
                machine=machine(),
                pid=os.getpid(),
                started_at=started_at or now,
                heartbeat_at=now,
            )


def why_lost(row: WorkerProcess, *, now, lost_after: timedelta) -> str:
    """Why the worker process of ``row`` is gone, or "" while it may still work."""
    if row.machine == machine() and row.pid != os.getpid() and not pid_exists(row.pid):
        return f"its process {row.pid} no longer exists on {row.name.split(':')[0]}"
    if now - row.heartbeat_at > lost_after:
        return f"no heartbeat since {row.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC"
    return ""


def lost_message(row: WorkerProcess, why: str) -> str:
    return (
        f"The worker process {row.name} of Docker host {row.queue} stopped ({why}): it was killed or its machine "
        "went away. Start a new attempt."
    )


@dataclass
class LostWork:
    worker: str
    reason: str
    attempts: list[Attempt] = field(default_factory=list)
    jobs: list[AttemptJob] = field(default_factory=list)

    def names(self) -> list[str]:
        return [f"attempt {a.pk}" for a in self.attempts] + [f"job {j.pk}" for j in self.jobs]


def do_end_work_of_lost_worker(*, row: WorkerProcess, why: str) -> LostWork:
    """End the attempts and jobs of a worker process that is gone, each failed with a system line saying why (the
    final status goes out to open pages as any other), and raise one ``worker_lost`` alert naming them, in one
    transaction. Another checker that got there first makes this a no-op (the conditional transitions)."""
    reason = lost_message(row, why)
    lost = LostWork(worker=row.name, reason=reason)
    with transaction.atomic():
        for attempt in Attempt.objects.filter(worker=row.name, status__in=WORKING).select_related("task"):
            if do_transition(attempt=attempt, to=AttemptStatus.FAILED, error=reason, only_from=WORKING):
                writer = LogWriter(attempt.pk)  # inside the transaction it inserts inline
                writer.write(None, LogStream.SYSTEM, reason + "\n")
                writer.close()
                lost.attempts.append(attempt)
        jobs = AttemptJob.objects.select_for_update(of=("self",)).filter(worker=row.name, status=JobStatus.RUNNING)
        for job in jobs.select_related("attempt__task"):  # (PostgreSQL: a second checker waits, then finds none)
            do_finish_job(job=job, status=JobStatus.FAILED, error=reason)
            lost.jobs.append(job)
        if lost.attempts or lost.jobs:
            first = lost.attempts[0] if lost.attempts else lost.jobs[0].attempt
            do_raise_alert(
                kind=AlertKind.WORKER_LOST,
                message=f"{reason} Ended: {', '.join(lost.names())[:1000]}",
                attempt=first,
                user=first.task.owner,
                dedupe_key=f"worker_lost:{row.name}",
            )
    return lost


def _clean_up_here(lost: LostWork) -> list[str]:
    """What the lost process left on this host: the egress sockets, the secret dir and the container of each ended
    attempt (or job) whose Docker host this is. Another host's leftovers wait for its own worker's sweeps."""
    from execution.hosts.egress import client as egress_client
    from execution.hosts.egress import sealed

    done = []
    for attempt in [*lost.attempts, *(job.attempt for job in lost.jobs)]:
        attempt.refresh_from_db()
        if not local_queue(attempt):
            continue
        if sealed():
            try:
                egress_client().close(attempt.pk)
            except Exception:  # a proxy that is down holds no sockets
                logger.info("egress proxy did not close the sockets of attempt %s", attempt.pk, exc_info=True)
        try:
            if do_clean_up_attempt(attempt=attempt):
                done.append(f"attempt {attempt.pk}: secret dir and container removed")
        except Exception as exc:  # the engine down: the containers sweep removes it when the engine answers
            logger.warning("could not remove what attempt %s left: %s", attempt.pk, exc)
    return done


def end_work_of_lost_workers() -> list[str]:
    """The check every worker process runs at its start and with each heartbeat: end the work of worker processes
    that are gone, and clean up after them here. Cheap when nothing is lost: one read of the working attempts'
    and jobs' worker names, one of their rows. Returns what it did (for the log and the tests)."""
    names = set(Attempt.objects.filter(status__in=WORKING).exclude(worker="").values_list("worker", flat=True))
    jobs = AttemptJob.objects.filter(status=JobStatus.RUNNING).exclude(worker="")
    names |= set(jobs.values_list("worker", flat=True))
    names.discard(worker_identity())
    if not names:
        return []
    now, lost_after = timezone.now(), timedelta(seconds=settings.ANYON_WORKER_LOST_SECONDS)
    done = []
    for row in WorkerProcess.objects.filter(name__in=names):  # a worker without a row never beat: the stale sweep's
        why = why_lost(row, now=now, lost_after=lost_after)
        if not why:
            continue
        lost = do_end_work_of_lost_worker(row=row, why=why)
        if lost.attempts or lost.jobs:
            done.append(f"worker {row.name} lost ({why}); ended {', '.join(lost.names())}")
            done += _clean_up_here(lost)
    for line in done:
        logger.warning("%s", line)
    return done


def do_forget_old_workers() -> int:
    """Rows of processes silent for a day that hold no work (recycled and stopped processes leave theirs)."""
    cutoff = timezone.now() - timedelta(days=1)
    holding = set(Attempt.objects.filter(status__in=WORKING).values_list("worker", flat=True))
    holding |= set(AttemptJob.objects.filter(status=JobStatus.RUNNING).values_list("worker", flat=True))
    with transaction.atomic():
        deleted, _ = WorkerProcess.objects.filter(heartbeat_at__lt=cutoff).exclude(name__in=holding).delete()
    return deleted
