"""System checks shared by ``manage.py doctor``, ``/healthz`` and the banner in the UI.

Each check is a small function returning a :class:`Check`; none of them raises. The checks live in modules by
subject (``docker``, ``claude_code``, ``credentials``, ``services``, ``scaleout``, ``schedules``); this module lists
the ones ``doctor`` and ``/healthz`` run. A constant a check reads is patched in that check's module, not here.
"""

from __future__ import annotations

from collections.abc import Callable

from anyon.health.checks import FAIL, OK, WARN, Check, run_checks
from anyon.health.claude_code import (
    CLAUDE_CODE_LABEL,
    LATEST_CACHE_SECONDS,
    check_claude_cli,
    latest_claude_code_release,
)
from anyon.health.credentials import check_container_uid, check_data_dir, check_secret_key, check_temp_dir
from anyon.health.docker import (
    GIB,
    MIN_DOCKER_API,
    MIN_FREE_BYTES,
    check_disk,
    check_docker,
    check_docker_hosts,
    check_docker_version,
    check_runtime_image,
    check_seccomp,
)
from anyon.health.queued_tasks import check_queued_tasks
from anyon.health.scaleout import check_broker, check_cache, check_channel_layer, check_redis
from anyon.health.schedules import check_schedules
from anyon.health.secret_store import check_secret_store
from anyon.health.services import (
    PYTHON_SUPPORTED,
    check_database,
    check_egress_proxy,
    check_migrations,
    check_python,
    check_wakeups,
    check_worker,
)

__all__ = [
    "CLAUDE_CODE_LABEL",
    "DOCTOR_CHECKS",
    "FAIL",
    "GIB",
    "HEALTH_CHECKS",
    "LATEST_CACHE_SECONDS",
    "MIN_DOCKER_API",
    "MIN_FREE_BYTES",
    "OK",
    "PYTHON_SUPPORTED",
    "WARN",
    "Check",
    "check_broker",
    "check_cache",
    "check_channel_layer",
    "check_claude_cli",
    "check_container_uid",
    "check_data_dir",
    "check_database",
    "check_disk",
    "check_docker",
    "check_docker_hosts",
    "check_docker_version",
    "check_egress_proxy",
    "check_migrations",
    "check_python",
    "check_queued_tasks",
    "check_redis",
    "check_runtime_image",
    "check_schedules",
    "check_seccomp",
    "check_secret_key",
    "check_secret_store",
    "check_temp_dir",
    "check_wakeups",
    "check_worker",
    "latest_claude_code_release",
    "run_checks",
]


#: Checks in the order ``doctor`` prints them.
DOCTOR_CHECKS: list[Callable[[], Check]] = [
    check_python,
    check_database,
    check_redis,
    check_cache,
    check_channel_layer,
    check_broker,
    check_migrations,
    check_schedules,
    check_queued_tasks,
    check_secret_key,
    check_secret_store,
    check_temp_dir,
    check_data_dir,
    check_container_uid,
    check_docker,
    check_docker_version,
    check_seccomp,
    check_disk,
    check_runtime_image,
    check_claude_cli,
    check_worker,
    check_docker_hosts,
    check_egress_proxy,
    check_wakeups,
]

#: The parts ``/healthz`` reports; any failure answers HTTP 503.
HEALTH_CHECKS: dict[str, Callable[[], Check]] = {
    "database": check_database,
    "cache": check_cache,
    "channel_layer": check_channel_layer,
    "broker": check_broker,
    "docker": check_docker,
    "runtime_image": check_runtime_image,
    "claude_code": check_claude_cli,
    "worker": check_worker,
    "egress_proxy": check_egress_proxy,
}
