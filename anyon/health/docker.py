"""The Docker engine: reachable, recent enough, the runtime image present, free disk, and every Docker host."""

from __future__ import annotations

import shutil
from pathlib import Path

from django.conf import settings

from anyon.health.checks import FAIL, OK, WARN, Check, version_key

#: The oldest engine API the runner is tested against: Docker Engine 20.10.
MIN_DOCKER_API = "1.41"
#: Free disk below which ``doctor`` warns: the runtime image alone takes ~1.5 GB, workspaces come on top.
MIN_FREE_BYTES = 5 * 1024**3
GIB = 1024**3


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


def check_docker_version(timeout: int = 3) -> Check:
    from shared.docker.client import get_docker_client

    name = "docker version"
    try:
        version = get_docker_client(timeout=timeout).version()
    except Exception as exc:
        return Check(name, FAIL, f"cannot ask the engine ({type(exc).__name__})", "fix the engine first")
    engine, api = version.get("Version", "?"), str(version.get("ApiVersion", ""))
    if version_key(api) < version_key(MIN_DOCKER_API):
        return Check(
            name,
            FAIL,
            f"Docker {engine}, API {api or '?'}: Anyon Cloud needs Docker Engine 20.10 or later (API {MIN_DOCKER_API})",
            "upgrade Docker Engine (https://docs.docker.com/engine/install/)",
        )
    return Check(name, OK, f"Docker {engine}, API {api} (needs API {MIN_DOCKER_API} or later)")


#: Engine architectures (Go's names) whose system call ABI Anyon's seccomp profile is written for.
SECCOMP_ARCHES = ("amd64", "arm64")


def check_seccomp(timeout: int = 3) -> Check:
    """Anyon's profile (shared/docker/seccomp.py) names no architecture, so it applies to the engine's own; its rules
    (``clone``'s flags are its first argument) hold on x86_64 and aarch64 only."""
    from shared.docker.client import get_docker_client

    name = "container seccomp profile"
    if settings.ANYON_CONTAINER_SECCOMP == "engine":
        return Check(name, OK, "the engine's default profile (ANYON_CONTAINER_SECCOMP=engine): 32-bit calls admitted")
    try:
        arch = get_docker_client(timeout=timeout).version().get("Arch", "?")
    except Exception as exc:
        return Check(name, FAIL, f"cannot ask the engine ({type(exc).__name__})", "fix the engine first")
    if arch not in SECCOMP_ARCHES:
        return Check(
            name,
            FAIL,
            f"Anyon's profile is written for amd64 and arm64 engines; this engine is {arch}",
            "set ANYON_CONTAINER_SECCOMP=engine (the engine's default profile)",
        )
    return Check(name, OK, f"Anyon's allowlist, the {arch} ABI only")


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


def check_docker_hosts() -> Check:
    """Every Docker host the installation knows, its state and its active attempts (from the workers' heartbeats,
    so this works on a web host that cannot reach the engines)."""
    from execution.attempts.selectors import host_rows
    from execution.models import HostState

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
