# Long because the sweeps (containers, volumes, secret dirs, lost workers and hosts) share one reporting (to be split).
"""Sweeps that keep the host clean when something went wrong (a crashed worker, a killed engine, a lost row).

Each sweep reports what it looked at and what it removed, calls ``progress`` for every action (the management
command prints it), logs every removal and raises an alert for every failure. They run every few minutes from a
django-q2 schedule (created by a migration, visible in the admin) and by hand with ``manage.py cleanup``.
Containers are only ever matched by this installation's labels (``anyon.managed`` + ``anyon.instance``):
an unlabelled container is never touched.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from execution.attempts import secret_dir
from execution.attempts.actions import do_transition
from execution.attempts.containers import home_volume
from execution.attempts.runs import do_set_workspace_volume
from execution.hosts import pool
from execution.hosts.actions import do_end_work_of_lost_host
from execution.logs.writer import LogWriter
from execution.models import (
    ACTIVE_STATUSES,
    Attempt,
    AttemptStatus,
    DockerHost,
    JobStatus,
    LogStream,
    PoolContainer,
)
from shared.alerts import AlertKind, do_raise_alert
from shared.docker import labels as label
from shared.docker.engine import DockerEngine, EngineError
from shared.models import AlertSeverity

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]


@dataclass
class SweepReport:
    name: str
    examined: int = 0
    removed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    dry_run: bool = False

    def try_remove(self, what: str, name: str, remove: Callable[[], object], progress: Progress) -> bool:
        """One removal of a sweep: counted as removed, or as failed with the engine's reason shown (the sweep goes
        on with the next)."""
        try:
            remove()
        except Exception as exc:
            self.failed.append(name)
            progress(f"FAILED to remove {what} {name}: {exc}")
            return False
        self.removed.append(name)
        return True

    def line(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        text = f"{self.name}: examined {self.examined}, {verb} {len(self.removed)}"
        return text + (f", FAILED {len(self.failed)}" if self.failed else "")


def _alert_orphans_removed(report: SweepReport, what: str, *, dedupe_key: str) -> None:
    """One warning per sweep that removed orphans (deduplicated by key), naming them; a dry run removed
    nothing."""
    if report.removed and not report.dry_run:
        do_raise_alert(
            kind=AlertKind.ORPHAN_REMOVED,
            severity=AlertSeverity.WARNING,
            message=f"removed {len(report.removed)} orphan {what}(s): {', '.join(report.removed)[:1500]}",
            dedupe_key=dedupe_key,
        )


def _noop(message: str) -> None:
    pass


def _local_queue() -> Q:
    """Attempts whose container and workspace live on this worker's Docker host (its queue)."""
    local = Q(queue=settings.ANYON_WORKER_QUEUE)
    return local | Q(queue="") if settings.ANYON_WORKER_QUEUE == "anyon" else local


def _busy_attempt_ids() -> set[int]:
    """Attempts whose worker may be using their secret dir or container right now."""
    active = set(Attempt.objects.filter(status__in=ACTIVE_STATUSES).values_list("pk", flat=True))
    jobs = set(
        Attempt.objects.filter(jobs__status__in=[JobStatus.QUEUED, JobStatus.RUNNING]).values_list("pk", flat=True)
    )
    return active | jobs


def sweep_secret_dirs(*, progress: Progress = _noop, dry_run: bool = False) -> SweepReport:
    """Remove ``cloud-secrets/<attempt>`` dirs whose attempt is not working, or that are older than the limit."""
    report = SweepReport("secret dirs", dry_run=dry_run)
    root = secret_dir.secrets_root()
    if not root.exists():
        return report
    warm = set(PoolContainer.objects.values_list("secret_dir", flat=True))  # read first: a claim moves a name
    busy = _busy_attempt_ids()  # from the warm ones to an attempt's, never back
    claimed = set(Attempt.objects.filter(pk__in=busy).exclude(secret_dir="").values_list("secret_dir", flat=True))
    max_age = settings.ANYON_SECRET_DIR_MAX_AGE
    for path in sorted(root.iterdir()):
        report.examined += 1
        age = time.time() - path.lstat().st_mtime
        key = int(path.name) if path.name.isdigit() else path.name
        pooled = isinstance(key, str) and secret_dir.POOL_DIR.fullmatch(key) is not None
        if pooled and (key in warm or age <= pool.CREATING_GRACE_SECONDS):
            continue  # a warm container's (or one being made): the pool replaces it when it is too old
        in_use = key in busy or key in claimed
        if in_use and age <= max_age:
            continue
        reason = "its attempt is not running" if not in_use else f"older than {max_age} s"
        if dry_run:
            report.removed.append(str(path))
            progress(f"would remove secret dir {path} ({reason})")
            continue
        removed = secret_dir.remove_secret_dir(key) if isinstance(key, int) or pooled else _remove_odd(path)
        if removed:
            report.removed.append(str(path))
            logger.warning("removed orphan secret dir %s (%s)", path, reason)
            progress(f"removed secret dir {path} ({reason})")
        else:
            report.failed.append(str(path))
            progress(f"FAILED to remove secret dir {path}")
            do_raise_alert(
                kind=AlertKind.SECRET_CLEANUP_FAILED,
                message=f"the cleanup sweep could not remove {path}",
                dedupe_key=f"secret_cleanup_failed:{path}",
            )
    _alert_orphans_removed(report, "secret dir", dedupe_key="orphan_removed:secret_dirs")
    return report


def _remove_odd(path) -> bool:
    """Something in cloud-secrets that is not an attempt's dir: it has no business there either."""
    import shutil

    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except OSError:
        return False
    return not path.exists()


def _younger_than(labels: dict[str, str], seconds: float, now: float) -> bool:
    created = labels.get(label.CREATED, "")
    return created.isdigit() and now - int(created) < seconds


def _remove_container(engine: DockerEngine, info: dict, *, with_pool_leftovers: bool) -> None:
    engine.stop_and_remove(info["Id"], timeout=1)
    if with_pool_leftovers:  # a warm container nobody owns: nobody's workspace, its volumes and secret dir go too
        for mount in info.get("Mounts") or []:
            if mount.get("Type") == "volume" and mount.get("Name", "").startswith(pool.POOL_VOLUME_PREFIX):
                engine.remove_volume(mount["Name"])
            dir_name = Path(mount.get("Source", "")).name
            if mount.get("Type") == "bind" and secret_dir.POOL_DIR.fullmatch(dir_name):
                secret_dir.remove_secret_dir(dir_name)


def _remove_workspace(engine: DockerEngine, volume: str) -> None:
    engine.remove_volume(volume)
    engine.remove_volume(home_volume(volume))


def sweep_containers(
    *, engine: DockerEngine | None = None, progress: Progress = _noop, dry_run: bool = False
) -> SweepReport:
    """Remove this installation's containers whose attempt is finished, unknown, or past ``anyon.expires``, and
    warm containers of the pool that neither the pool nor an attempt owns (with their volumes and secret dir)."""
    report = SweepReport("containers", dry_run=dry_run)
    engine = engine or DockerEngine()
    warm = set(PoolContainer.objects.values_list("container_id", flat=True))  # read first, as for secret dirs
    busy = _busy_attempt_ids()
    known = set(Attempt.objects.values_list("pk", flat=True))
    now = time.time()
    for info in engine.list_managed(settings.ANYON_INSTANCE):
        labels = info.get("Labels") or {}
        if labels.get(label.QUEUE, settings.ANYON_WORKER_QUEUE) != settings.ANYON_WORKER_QUEUE:
            continue  # another host's container (on an engine shared by several queues): not ours to judge
        report.examined += 1
        raw_id = labels.get(label.ATTEMPT, "")
        attempt_id = int(raw_id) if raw_id.isdigit() else None
        try:
            expired = float(labels.get(label.EXPIRES, "inf")) < now
        except ValueError:
            expired = True
        unowned_warm = False
        if labels.get(pool.POOL_LABEL) == "1":
            # A warm container carries no attempt label (it had none when it was made): the pool's own while it
            # has its row (the refill replaces it when stale), the claiming attempt's once claimed, else an orphan.
            if info["Id"] in warm or _younger_than(labels, pool.CREATING_GRACE_SECONDS, now):
                continue
            attempt_id = Attempt.objects.filter(container_id=info["Id"]).values_list("pk", flat=True).first()
            unowned_warm = attempt_id is None
        if attempt_id in busy and not expired:
            continue
        reason = "expired" if expired else ("unknown attempt" if attempt_id not in known else "attempt finished")
        reason = "a warm container nobody owns" if unowned_warm else reason
        name = (info.get("Names") or ["?"])[0].lstrip("/")
        if dry_run:
            report.removed.append(name)
            progress(f"would remove container {name} ({reason})")
            continue
        remove = functools.partial(_remove_container, engine, info, with_pool_leftovers=unowned_warm)
        if not report.try_remove("container", name, remove, progress):
            continue
        logger.warning("removed orphan container %s (%s)", name, reason)
        progress(f"removed container {name} ({reason})")
    _alert_orphans_removed(report, "container", dedupe_key="orphan_removed:containers")
    return report


def sweep_pool(*, engine: DockerEngine | None = None, progress: Progress = _noop) -> SweepReport:
    """Warm containers of this queue whose container is gone, made from another image or settings, too old or
    more than ``ANYON_POOL_SIZE`` are retired (the refill makes new ones); pool volumes nobody owns are removed."""
    report = SweepReport("warm pool")
    engine = engine or DockerEngine()
    report.examined = PoolContainer.objects.filter(queue=settings.ANYON_WORKER_QUEUE).count()
    retired = pool.retire_stale(engine)
    report.removed += [f"warm container ({n + 1})" for n in range(retired)]
    for volume in pool.orphan_pool_volumes(engine):
        report.examined += 1
        if not report.try_remove("pool volume", volume, functools.partial(engine.remove_volume, volume), progress):
            continue
        progress(f"removed pool volume {volume} (no warm container or attempt owns it)")
    if retired:
        progress(f"retired {retired} warm container(s)")
    return report


def sweep_idle_workspaces(*, engine: DockerEngine | None = None, progress: Progress = _noop) -> SweepReport:
    """Remove the workspace (and home) volumes of attempts idle for longer than ``ANYON_ATTEMPT_IDLE_TTL``, and
    with ``ANYON_WORKSPACE_MAX_BYTES`` set, those of finished attempts whose workspace and home together are larger.

    The attempt, its logs and its recorded diff stay; follow-ups and pull requests then need a new attempt. An
    attempt still working (or with a job queued or running) is never touched: a workspace growing during a run is
    bounded by the run's own limits, and is removed by the next sweep after the run if it is too large.
    """
    report = SweepReport("idle workspaces")
    engine = engine or DockerEngine()
    cutoff = timezone.now() - timedelta(seconds=settings.ANYON_ATTEMPT_IDLE_TTL)
    busy = _busy_attempt_ids()
    with_workspace = Attempt.objects.exclude(workspace_volume="").filter(_local_queue())
    idle = with_workspace.filter(
        Q(last_activity_at__lt=cutoff) | Q(last_activity_at__isnull=True, created_at__lt=cutoff)
    )
    reasons = {attempt.pk: ("idle", attempt) for attempt in idle}
    max_bytes = settings.ANYON_WORKSPACE_MAX_BYTES
    if max_bytes > 0:
        sizes = engine.volume_sizes()
        for attempt in with_workspace.exclude(pk__in=list(reasons)):
            used = sizes.get(attempt.workspace_volume, 0) + sizes.get(home_volume(attempt.workspace_volume), 0)
            if used > max_bytes:
                reasons[attempt.pk] = (f"{used:,} bytes, more than ANYON_WORKSPACE_MAX_BYTES ({max_bytes:,})", attempt)
    for attempt_id, (reason, attempt) in sorted(reasons.items()):
        report.examined += 1
        if attempt_id in busy:
            continue
        volume = attempt.workspace_volume
        if not report.try_remove("workspace", volume, functools.partial(_remove_workspace, engine, volume), progress):
            continue
        do_set_workspace_volume(attempt=attempt, volume="")
        if reason == "idle":
            progress(f"removed idle workspace {volume} of attempt {attempt_id}")
            continue
        writer = LogWriter(attempt_id)
        writer.write(None, LogStream.SYSTEM, f"The workspace was removed by the cleanup sweep: {reason}.\n")
        writer.close()
        logger.warning("removed workspace %s of attempt %s: %s", volume, attempt_id, reason)
        progress(f"removed large workspace {volume} of attempt {attempt_id} ({reason})")
    return report


def sweep_stale_attempts(*, engine: DockerEngine | None = None, progress: Progress = _noop) -> SweepReport:
    """End attempts whose worker stopped heartbeating: failed with a reason, secret dir and container removed."""
    report = SweepReport("stale attempts")
    cutoff = timezone.now() - timedelta(seconds=settings.ANYON_STALE_ATTEMPT_SECONDS)
    stale = Attempt.objects.filter(
        _local_queue(), status__in=[AttemptStatus.PROVISIONING, AttemptStatus.RUNNING], heartbeat_at__lt=cutoff
    ).select_related("task")
    for attempt in stale:
        report.examined += 1
        reason = (
            f"The worker {attempt.worker or '?'} stopped sending heartbeats (last at "
            f"{attempt.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC); the attempt was ended by the cleanup sweep."
        )
        if not do_transition(attempt=attempt, to=AttemptStatus.FAILED, error=reason):
            continue
        secret_dir.remove_secret_dir(secret_dir.key_of(attempt))
        if attempt.container_id:
            try:
                (engine or DockerEngine()).stop_and_remove(attempt.container_id, timeout=1)
            except Exception:
                logger.warning("could not remove container of stale attempt %s", attempt.pk, exc_info=True)
        writer = LogWriter(attempt.pk)
        writer.write(None, LogStream.SYSTEM, reason + "\n")
        writer.close()
        report.removed.append(str(attempt.pk))
        progress(f"ended stale attempt {attempt.pk}")
        do_raise_alert(
            kind=AlertKind.STALE_ATTEMPT,
            message=f"attempt {attempt.pk}: {reason}",
            attempt=attempt,
            user=attempt.task.owner,
        )
    return report


def sweep_lost_hosts(*, progress: Progress = _noop, **_) -> SweepReport:
    """End the attempts and jobs of other hosts whose worker stopped heartbeating (killed, its machine gone): that
    worker cannot end them itself. Their container and secret dir stay on that host until its worker comes back
    and sweeps them (an attempt that ended is not working, so its leftovers go)."""
    report = SweepReport("lost hosts")
    cutoff = timezone.now() - timedelta(seconds=settings.ANYON_HOST_LOST_SECONDS)
    lost = DockerHost.objects.filter(heartbeat_at__lt=cutoff).exclude(name=settings.ANYON_WORKER_QUEUE)
    for host in lost:
        ended = do_end_work_of_lost_host(host=host, cutoff=cutoff)
        for what in ended:
            progress(f"ended {what} of lost host {host.name}")
        report.examined += len(ended)
        report.removed += ended
    return report


def sweep_lost_workers(*, progress: Progress = _noop, **_) -> SweepReport:
    """End the work of worker processes that are gone (execution/hosts/workers.py; every worker also does this with each
    heartbeat)."""
    from execution.hosts.workers import do_forget_old_workers, end_work_of_lost_workers

    report = SweepReport("lost workers")
    for line in end_work_of_lost_workers():
        progress(line)
        report.examined += 1
        report.removed.append(line)
    do_forget_old_workers()
    return report


SWEEPS: dict[str, Callable[..., SweepReport]] = {
    "lost-workers": sweep_lost_workers,
    "stale": sweep_stale_attempts,
    "lost-hosts": sweep_lost_hosts,
    "secret-dirs": sweep_secret_dirs,
    "containers": sweep_containers,
    "pool": sweep_pool,
    "workspaces": sweep_idle_workspaces,
}


def run_scheduled_cleanup() -> str:
    """The django-q2 scheduled task: every sweep; one that fails (engine down) does not stop the others."""
    lines = []
    for name, sweep in SWEEPS.items():
        try:
            lines.append(sweep().line())
        except Exception as exc:
            logger.exception("cleanup sweep %s failed", name)
            lines.append(f"{name}: failed ({type(exc).__name__}: {exc})")
            if "docker" in type(exc).__module__.lower() or isinstance(exc, EngineError):
                do_raise_alert(
                    kind=AlertKind.DOCKER_UNREACHABLE,
                    message=f"cleanup sweep {name}: Docker engine unreachable: {exc}",
                    dedupe_key=AlertKind.DOCKER_UNREACHABLE,
                )
    return "; ".join(lines)
