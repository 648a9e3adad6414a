"""The sweep of secret dirs nobody uses (docs/ARCHITECTURE.md, "Warm pool", Sweeps)."""

from __future__ import annotations

import logging
import time

from django.conf import settings

from execution.attempts import secret_dir
from execution.hosts.pool import fingerprint
from execution.models import Attempt, PoolContainer
from execution.sweeps.report import Progress, SweepReport, alert_orphans_removed, busy_attempt_ids, noop
from shared.alerts import AlertKind, do_raise_alert

logger = logging.getLogger(__name__)


def sweep_secret_dirs(*, progress: Progress = noop, dry_run: bool = False) -> SweepReport:
    """Remove ``cloud-secrets/<attempt>`` dirs whose attempt is not working, or that are older than the limit."""
    report = SweepReport("secret dirs", dry_run=dry_run)
    root = secret_dir.secrets_root()
    if not root.exists():
        return report
    warm = set(PoolContainer.objects.values_list("secret_dir", flat=True))  # read first: a claim moves a name
    busy = busy_attempt_ids()  # from the warm ones to an attempt's, never back
    claimed = set(Attempt.objects.filter(pk__in=busy).exclude(secret_dir="").values_list("secret_dir", flat=True))
    max_age = settings.ANYON_SECRET_DIR_MAX_AGE
    for path in sorted(root.iterdir()):
        report.examined += 1
        age = time.time() - path.lstat().st_mtime
        key = int(path.name) if path.name.isdigit() else path.name
        pooled = isinstance(key, str) and secret_dir.POOL_DIR.fullmatch(key) is not None
        if pooled and (key in warm or age <= fingerprint.CREATING_GRACE_SECONDS):
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
    alert_orphans_removed(report, "secret dir", dedupe_key="orphan_removed:secret_dirs")
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
