"""What keeps credentials this service's: the secret key, the temp dir, the data dir and the containers' uid."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections

from anyon.health.checks import FAIL, OK, WARN, Check


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
    if account and uid == os.geteuid() and uid != 0:
        return Check(
            name,
            WARN,
            f"this service runs as uid {uid}, the containers' own: any process of this account (the web server, the "
            "worker, a shell) can read every agent's /proc/<pid>/environ and, through /proc/<pid>/root, its files",
            f"give {account} a uid of its own: deploy/install.sh makes such a user (docs/RUNBOOK.md, 'Host accounts')",
            required=False,
        )
    if account or uid == 0:
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
            "run the worker as root or with AmbientCapabilities=CAP_CHOWN (the unit deploy/install.sh writes) "
            "(docs/DEPLOYMENT.md)",
            required=False,
        )
    return Check(name, OK, f"containers run as uid {uid} (no host account); the secret dir can be handed over")


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
