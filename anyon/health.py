"""System checks shared by ``manage.py doctor``, ``/healthz`` and the banner in the UI.

Each check is a small function returning a :class:`Check`; none of them raises.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # OK, WARN or FAIL
    detail: str
    fix: str = ""
    required: bool = True

    @property
    def failed(self) -> bool:
        return self.status == FAIL

    def as_dict(self) -> dict:
        return asdict(self)


def check_database() -> Check:
    try:
        with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
            cursor.execute("SELECT 1")
        vendor = connections[DEFAULT_DB_ALIAS].vendor
        return Check("database", OK, f"{vendor} reachable")
    except Exception as exc:
        return Check("database", FAIL, f"not reachable: {exc}", "check DATABASE_URL and that the server runs")


def check_migrations() -> Check:
    try:
        connection = connections[DEFAULT_DB_ALIAS]
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except Exception as exc:
        return Check("migrations", FAIL, f"cannot read migration state: {exc}", "python manage.py migrate")
    if plan:
        return Check("migrations", FAIL, f"{len(plan)} migration(s) not applied", "python manage.py migrate")
    return Check("migrations", OK, "database schema is up to date")


def check_docker(timeout: int = 3) -> Check:
    from shared.docker.client import get_docker_client

    try:
        client = get_docker_client(timeout=timeout)
        client.ping()
        version = client.version()
    except Exception as exc:
        return Check(
            "docker engine",
            FAIL,
            f"not reachable ({type(exc).__name__}): runs cannot start",
            "start Docker (sudo systemctl start docker) or set DOCKER_HOST to a reachable engine",
        )
    return Check("docker engine", OK, f"Docker {version.get('Version', '?')}, API {version.get('ApiVersion', '?')}")


def check_runtime_image(timeout: int = 3) -> Check:
    import docker

    from shared.docker.client import get_docker_client

    image = settings.ANYON_CLOUD_IMAGE
    try:
        get_docker_client(timeout=timeout).images.get(image)
    except docker.errors.ImageNotFound:
        return Check("runtime image", FAIL, f"{image} is not present", "make image (or docker pull " + image + ")")
    except Exception as exc:
        return Check("runtime image", FAIL, f"cannot ask the engine ({type(exc).__name__})", "fix the engine first")
    return Check("runtime image", OK, f"{image} present")


#: Python versions the app supports: ``requires-python`` of pyproject.toml (a test keeps the two in step).
PYTHON_SUPPORTED = ((3, 11), (3, 13))
#: The oldest engine API the runner is tested against: Docker Engine 20.10.
MIN_DOCKER_API = "1.41"
#: Free disk below which ``doctor`` warns: the runtime image alone takes ~1.5 GB, workspaces come on top.
MIN_FREE_BYTES = 5 * 1024**3
GIB = 1024**3


def check_python() -> Check:
    low, high = PYTHON_SUPPORTED
    here = ".".join(str(part) for part in sys.version_info[:3])
    supported = f"{low[0]}.{low[1]} to {high[0]}.{high[1]}"
    if not sys.platform.startswith("linux"):
        return Check("python", FAIL, f"Python {here} on {sys.platform}: Anyon Cloud runs on Linux", "run it on Linux")
    if not low <= sys.version_info[:2] <= high:
        return Check(
            "python",
            FAIL,
            f"Python {here}; Anyon Cloud supports {supported}",
            f"install Python {supported} and recreate the virtualenv (rm -rf .venv && make run)",
        )
    return Check("python", OK, f"Python {here} on Linux (supported: {supported})")


def check_docker_version(timeout: int = 3) -> Check:
    from shared.docker.client import get_docker_client

    name = "docker version"
    try:
        version = get_docker_client(timeout=timeout).version()
    except Exception as exc:
        return Check(name, FAIL, f"cannot ask the engine ({type(exc).__name__})", "fix the engine first")
    engine, api = version.get("Version", "?"), str(version.get("ApiVersion", ""))
    if _version_key(api) < _version_key(MIN_DOCKER_API):
        return Check(
            name,
            FAIL,
            f"Docker {engine}, API {api or '?'}: Anyon Cloud needs Docker Engine 20.10 or later (API {MIN_DOCKER_API})",
            "upgrade Docker Engine (https://docs.docker.com/engine/install/)",
        )
    return Check(name, OK, f"Docker {engine}, API {api} (needs API {MIN_DOCKER_API} or later)")


def _docker_root_dir(timeout: int) -> Path | None:
    """Docker's data root when the engine runs on this machine (a local socket), else None."""
    if settings.DOCKER_HOST and not settings.DOCKER_HOST.startswith("unix://"):
        return None
    from shared.docker.client import get_docker_client

    try:
        root = get_docker_client(timeout=timeout).info().get("DockerRootDir", "")
    except Exception:
        return None
    return Path(root) if root and Path(root).exists() else None


def check_disk(timeout: int = 3) -> Check:
    """Free space for the database and logs (``ANYON_DATA_DIR``) and for images and workspaces (Docker's data root)."""
    places = {"data dir": Path(settings.DATA_DIR)}
    docker_root = _docker_root_dir(timeout)
    if docker_root is not None:
        places["Docker"] = docker_root
    free: dict[str, tuple[Path, int]] = {}
    for what, path in places.items():
        try:
            free[what] = (path, shutil.disk_usage(path).free)
        except OSError as exc:
            return Check("disk", WARN, f"cannot measure {path} ({exc.strerror})", required=False)
    text = "; ".join(f"{what} {path}: {space / GIB:.1f} GB free" for what, (path, space) in free.items())
    if docker_root is None:
        text += "; Docker's data root is not on this machine (not measured)"
    low = [f"{path}" for path, space in free.values() if space < MIN_FREE_BYTES]
    if low:
        return Check(
            "disk",
            WARN,
            f"less than {MIN_FREE_BYTES // GIB} GB free: {text}",
            "free space (docker image prune, old workspaces: manage.py cleanup) or grow the disk of " + ", ".join(low),
            required=False,
        )
    return Check("disk", OK, text, required=False)


CLAUDE_CODE_LABEL = "io.anyon.versions.claude-code"
LATEST_CACHE_SECONDS = 6 * 3600


def latest_claude_code_release() -> str:
    """The registry's latest Claude Code release ("" when the registry cannot be reached), cached for hours."""
    from django.core.cache import cache

    key = "anyon:claude-code-latest"
    cached = cache.get(key)
    if cached is not None:
        return cached
    import requests

    url = f"{settings.ANYON_NPM_REGISTRY_URL.rstrip('/')}/@anthropic-ai%2Fclaude-code/latest"
    try:
        response = requests.get(url, timeout=3, headers={"Accept": "application/json"})
        latest = str(response.json().get("version", "")) if response.status_code == 200 else ""
    except (requests.RequestException, ValueError):
        latest = ""
    cache.set(key, latest, LATEST_CACHE_SECONDS if latest else 300)
    return latest


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def check_claude_cli(timeout: int = 3) -> Check:
    """The Claude Code release inside the configured image (its build label), against the registry's latest."""
    from shared.docker.client import get_docker_client

    name = "claude code"
    try:
        labels = get_docker_client(timeout=timeout).images.get(settings.ANYON_CLOUD_IMAGE).labels or {}
    except Exception as exc:
        return Check(name, WARN, f"cannot read the runtime image ({type(exc).__name__})", required=False)
    current = labels.get(CLAUDE_CODE_LABEL, "")
    if not current:
        return Check(name, WARN, f"{settings.ANYON_CLOUD_IMAGE} names no Claude Code version", required=False)
    latest = latest_claude_code_release()
    if not latest:
        detail = f"{current} in the image; the npm registry could not be reached: a newer release is not known"
        return Check(name, WARN, detail, required=False)
    if _version_key(latest) > _version_key(current):
        return Check(
            name, WARN, f"{current} in the image; {latest} is released", "make image CLAUDE_CODE_VERSION=" + latest,
            required=False,
        )  # fmt: skip
    return Check(name, OK, f"{current} in the image, the latest release", required=False)


def _is_tmpfs(path: Path) -> bool:
    """True when ``path`` lives on a tmpfs mount (longest matching mount point in /proc/mounts)."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return False
    resolved = str(path.resolve())
    best, fstype = "", ""
    for line in mounts:
        parts = line.split()
        if len(parts) < 3:
            continue
        mount_point = parts[1].replace("\\040", " ")
        inside = resolved == mount_point or resolved.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) > len(best):
            best, fstype = mount_point, parts[2]
    return fstype == "tmpfs"


def check_temp_dir() -> Check:
    from shared.tempdir import temp_dir_problem

    path: Path = settings.ANYON_TEMP_DIR
    fix = f"mkdir -p {path} && chmod 700 {path} && chown {os.geteuid()} {path}"
    problem = temp_dir_problem(path)
    if problem:  # a symlink, not a directory, or another user's: never chmod-ed into use
        return Check("temp dir", FAIL, problem, f"rm -rf {path} (as root if needed), then {fix}")
    try:
        info = path.lstat()
    except FileNotFoundError:
        return Check("temp dir", FAIL, f"{path} does not exist", fix)
    mode = stat.S_IMODE(info.st_mode)
    if mode != 0o700:
        return Check("temp dir", FAIL, f"{path} has mode {mode:04o}, secrets need 0700", f"chmod 700 {path}")
    if not _is_tmpfs(path):
        return Check(
            "temp dir",
            WARN,
            f"{path} is 0700 but not on tmpfs: secrets touch the disk while a run is active",
            f"mount -t tmpfs -o mode=0700,size=64m tmpfs {path}",
            required=False,
        )
    return Check("temp dir", OK, f"{path} is 0700 on tmpfs")


def check_data_dir() -> Check:
    """The SQLite database (sessions, the audit trail, ciphertexts) and its folder are this service user's only."""
    from anyon.data_dir import SQLITE_SUFFIXES, sqlite_path

    name = "data dir"
    path = sqlite_path(connections[DEFAULT_DB_ALIAS].settings_dict)
    if path is None:
        return Check(name, OK, f"the database is {connections[DEFAULT_DB_ALIAS].vendor}, not a local file")
    folder = path.parent
    try:
        info = folder.lstat()
    except FileNotFoundError:
        return Check(name, FAIL, f"{folder} does not exist", f"mkdir -m 700 -p {folder}")
    loose = []
    for suffix in SQLITE_SUFFIXES:
        try:
            found = Path(f"{path}{suffix}").lstat()
        except FileNotFoundError:
            continue
        if stat.S_IMODE(found.st_mode) & 0o077 or found.st_uid != os.geteuid():
            loose.append(f"{path.name}{suffix} ({stat.S_IMODE(found.st_mode):04o}, uid {found.st_uid})")
    if loose:
        return Check(
            name,
            FAIL,
            f"database files others may read: {', '.join(loose)}; they hold session keys",
            f"chown {os.geteuid()} {path}* && chmod 600 {path}*",
        )
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077 or info.st_uid != os.geteuid():
        return Check(
            name,
            WARN,
            f"{folder} has mode {mode:04o} (uid {info.st_uid}): other users can list it; the database files are 0600",
            f"chown {os.geteuid()} {folder} && chmod 700 {folder} (docs/RUNBOOK.md)",
            required=False,
        )
    return Check(name, OK, f"{folder} is 0700, the database files 0600")


def check_container_uid() -> Check:
    """The uid of the agents must be nobody on this host, and this worker must be able to give it the secret dir."""
    import pwd

    from shared.tempdir import can_hand_over

    name = "container uid"
    uid = settings.ANYON_CONTAINER_UID
    try:
        account = pwd.getpwuid(uid).pw_name
    except KeyError:
        account = ""
    if (account and uid != os.geteuid()) or uid == 0:
        return Check(
            name,
            WARN,
            f"containers run as uid {uid}, which is the host account {account or 'root'}: it can read every agent's "
            "/proc/<pid>/environ and, through /proc/<pid>/root, the secret files",
            "runtime-image/build.sh -- --build-arg CONTAINER_UID=<a uid no host account has>, then set "
            "ANYON_CONTAINER_UID/GID to it (docs/RUNBOOK.md)",
            required=False,
        )
    if not can_hand_over(uid):
        return Check(
            name,
            WARN,
            f"this process runs as uid {os.geteuid()} without CAP_CHOWN: it cannot give the secret dir to uid {uid}, "
            "so runs fail (secret_injection_failed)",
            "run the worker as root, as uid ANYON_CONTAINER_UID, or with AmbientCapabilities=CAP_CHOWN "
            "(docs/DEPLOYMENT.md)",
            required=False,
        )
    owner = "this service user" if account else "no host account"
    return Check(name, OK, f"containers run as uid {uid} ({owner}); the secret dir can be handed over")


def check_secret_key() -> Check:
    if settings.SECRET_KEY_SOURCE == "env":
        return Check("secret key", OK, "ANYON_SECRET_KEY is set")
    if settings.SECRET_KEY_SOURCE == "missing":
        return Check(
            "secret key",
            FAIL,
            "ANYON_SECRET_KEY is not set (required when DEBUG is off: it encrypts every stored credential)",
            "python3 -c 'import secrets; print(secrets.token_urlsafe(48))', set it as ANYON_SECRET_KEY and keep it "
            "with your database backup (docs/DEPLOYMENT.md)",
        )
    return Check(
        "secret key",
        WARN,
        "using a generated development key (DEBUG is on)",
        "set ANYON_SECRET_KEY (docs/DEPLOYMENT.md) before storing real credentials",
        required=False,
    )


def check_worker() -> Check:
    from django_q.status import Stat

    try:
        stats = Stat.get_all()
    except Exception as exc:
        return Check("worker", FAIL, f"cannot read worker status: {exc}", "check the cache / REDIS_URL")
    running = [s for s in stats if s.status not in ("Stopped", "Stopping")]
    if not running:
        return Check(
            "worker",
            FAIL,
            "no worker heartbeat: queued runs will not start",
            "start the worker: python manage.py qcluster (make run starts it)",
        )
    workers = sum(len(s.workers) for s in running)
    return Check("worker", OK, f"{len(running)} cluster(s), {workers} worker process(es), heartbeat live")


def check_wakeups() -> Check:
    """Whether the web server and the worker can wake each other (else new work waits for a poll)."""
    from shared.wakeups import sockets as wakeups

    name = "wake-ups"
    if settings.REDIS_URL:
        return Check(name, OK, "carried by Redis", required=False)
    slow = f"a queued task or a new log batch waits for the polls ({settings.ANYON_LOG_POLL_SECONDS} s)"
    if not settings.ANYON_WAKEUP_DIR:
        return Check(name, WARN, f"turned off: {slow}", "unset ANYON_WAKEUP_DIR (or set it to a local folder)", False)
    from shared.wakeups.channel_layer import TOPIC
    from shared.wakeups.queue_broker import queue_topic

    folder, widest_pid = Path(settings.ANYON_WAKEUP_DIR), 4194304  # Linux's pid_max
    topics = (TOPIC, queue_topic(settings.ANYON_WORKER_QUEUE))
    longest = max(len(str(wakeups.socket_path(folder, t, widest_pid, "0" * 8))) for t in topics)
    if longest > wakeups.MAX_SOCKET_PATH:
        return Check(
            name, WARN, f"ANYON_WAKEUP_DIR is too long for socket paths: {slow}", "choose a shorter path", False
        )
    folder = wakeups.wakeup_dir()
    if folder is None:
        return Check(name, WARN, f"cannot use {settings.ANYON_WAKEUP_DIR}: {slow}", "make it writable (0700)", False)
    listening = len(list(folder.glob("*.sock")))
    return Check(name, OK, f"{folder}: {listening} process(es) listening", required=False)


def check_egress_proxy() -> Check:
    """Sealed runs need this host's egress proxy; in mounted mode it is not used."""
    name = "egress proxy"
    if settings.ANYON_CREDENTIAL_MODE != "sealed":
        return Check(name, WARN, "mounted mode: runs hold credentials and have open egress", required=False)
    from shared.egress import EgressClient, EgressError

    try:
        status = EgressClient(settings.ANYON_EGRESS_CONTROL, timeout=2).status()
    except EgressError as exc:
        return Check(
            name,
            FAIL,
            f"not answering on {settings.ANYON_EGRESS_CONTROL}: {exc}",
            "start it: manage.py serve does; a worker-only host runs manage.py egress_proxy",
        )
    return Check(name, OK, f"pid {status.get('pid')}, {len(status.get('attempts', []))} attempt(s) open")


def check_docker_hosts() -> Check:
    """Every Docker host the installation knows, its state and its active attempts (from the workers' heartbeats,
    so this works on a web host that cannot reach the engines)."""
    from execution.models import HostState
    from execution.selectors import host_rows

    name = "docker hosts"
    try:
        rows = host_rows()
    except Exception as exc:
        return Check(name, FAIL, f"cannot read the hosts: {type(exc).__name__}", "fix the database first")
    parts = [f"{row['name']} {row['label']} ({row['active']} active)" for row in rows]
    bad = [row["name"] for row in rows if row["state"] in (HostState.LOST, HostState.ENGINE_DOWN)]
    if bad:  # a warning: the worker and docker checks fail for this host's own engine and worker
        fix = "docs/RUNBOOK.md, 'A Docker host lost': start the engine or the worker of " + ", ".join(bad)
        return Check(name, WARN, "; ".join(parts), fix, required=False)
    return Check(name, OK, "; ".join(parts))


#: Checks in the order ``doctor`` prints them.
DOCTOR_CHECKS: list[Callable[[], Check]] = [
    check_python,
    check_database,
    check_migrations,
    check_secret_key,
    check_temp_dir,
    check_data_dir,
    check_container_uid,
    check_docker,
    check_docker_version,
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
    "docker": check_docker,
    "runtime_image": check_runtime_image,
    "claude_code": check_claude_cli,
    "worker": check_worker,
    "egress_proxy": check_egress_proxy,
}


def run_checks(checks: list[Callable[[], Check]]) -> list[Check]:
    return [check() for check in checks]
