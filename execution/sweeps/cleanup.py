"""Every cleanup sweep by name, and the scheduled task that runs them all (docs/ARCHITECTURE.md, "Scheduled jobs").

Each sweep is in a module of what it cleans; they match containers only by this installation's labels.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from execution.sweeps.containers import sweep_containers
from execution.sweeps.lost_work import sweep_lost_hosts, sweep_lost_workers, sweep_stale_attempts
from execution.sweeps.report import Progress, SweepReport
from execution.sweeps.secret_dirs import sweep_secret_dirs
from execution.sweeps.warm_pool import sweep_pool
from execution.sweeps.workspaces import sweep_idle_workspaces
from shared.alerts import AlertKind, do_raise_alert
from shared.docker.engine import EngineError

logger = logging.getLogger(__name__)

__all__ = [
    "SWEEPS",
    "Progress",
    "SweepReport",
    "run_scheduled_cleanup",
    "sweep_containers",
    "sweep_idle_workspaces",
    "sweep_lost_hosts",
    "sweep_lost_workers",
    "sweep_pool",
    "sweep_secret_dirs",
    "sweep_stale_attempts",
]


def sweep_snapshots(**kwargs) -> SweepReport:
    """Snapshots past their age or the size caps, and orphan snapshot images (execution/sweeps/snapshots.py, which
    builds on this module)."""
    from execution.sweeps.snapshots import sweep_snapshots as sweep

    return sweep(**kwargs)


SWEEPS: dict[str, Callable[..., SweepReport]] = {
    "lost-workers": sweep_lost_workers,
    "stale": sweep_stale_attempts,
    "lost-hosts": sweep_lost_hosts,
    "secret-dirs": sweep_secret_dirs,
    "containers": sweep_containers,
    "pool": sweep_pool,
    "workspaces": sweep_idle_workspaces,
    "snapshots": sweep_snapshots,
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
