"""The per-attempt secret directory on the host: ``<ANYON_TEMP_DIR>/cloud-secrets/<attempt>``, or the
``pool-<hex>`` directory of the warm container the attempt claimed (recorded as ``Attempt.secret_dir``).

Created 0700 and owned by the container user's uid (bind mounts keep host ownership and modes), files 0400, written
just before a container's first exec and removed right after its last. Removal is verified and retried; when it
still fails, an alert is raised and the scheduled sweep removes it later.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import time
from pathlib import Path

from django.conf import settings

from shared.tempdir import can_hand_over, ensure_temp_dir

logger = logging.getLogger(__name__)

#: File names the runtime image's exec wrapper reads (runtime-image/files/anyon-exec).
GITHUB_TOKEN = "github_token"
CLAUDE_OAUTH_TOKEN = "claude_oauth_token"
ANTHROPIC_API_KEY = "anthropic_api_key"
SECRET_FILES = (GITHUB_TOKEN, CLAUDE_OAUTH_TOKEN, ANTHROPIC_API_KEY)


#: A warm container's directory: made with the container, before any attempt exists.
POOL_DIR = re.compile(r"pool-[0-9a-f]{16}")

#: An attempt's id, or the name of a warm container's directory.
DirKey = int | str


class SecretDirError(Exception):
    pass


def secrets_root() -> Path:
    return settings.ANYON_TEMP_DIR / "cloud-secrets"


def new_pool_dir_name() -> str:
    return f"pool-{secrets.token_hex(8)}"


def key_of(attempt) -> DirKey:
    """The attempt's directory: the warm container's it claimed, else the one named after it."""
    return attempt.secret_dir or attempt.pk


def secret_dir_path(key: DirKey) -> Path:
    if isinstance(key, str) and not key.isdigit():
        if not POOL_DIR.fullmatch(key):
            raise ValueError(f"not a secret dir name: {key!r}")
        return secrets_root() / key
    return secrets_root() / str(int(key))


def _owner_ids() -> tuple[int, int]:
    return settings.ANYON_CONTAINER_UID, settings.ANYON_CONTAINER_GID


def _check_names(files: dict[str, str]) -> None:
    unknown = set(files) - set(SECRET_FILES)
    if unknown:
        raise SecretDirError(f"unknown secret file names: {sorted(unknown)}")


def write_secret_dir(attempt_id: DirKey, files: dict[str, str]) -> Path:
    """Create the attempt's secret dir with ``files`` (name → value). Raises SecretDirError with the reason."""
    _check_names(files)
    root = secrets_root()
    try:
        ensure_temp_dir(settings.ANYON_TEMP_DIR)
        root.mkdir(mode=0o700, exist_ok=True)
        os.chmod(root, 0o700)
    except OSError as exc:
        raise SecretDirError(f"could not prepare {root}: {exc.strerror or exc}") from exc
    path = secret_dir_path(attempt_id)
    uid, gid = _owner_ids()
    need_chown = os.geteuid() != uid
    if not can_hand_over(uid):
        raise SecretDirError(
            f"the worker runs as uid {os.geteuid()} and cannot give the secret dir to the container user {uid}: "
            "run the worker as root, as uid ANYON_CONTAINER_UID, or with CAP_CHOWN (docs/RUNBOOK.md)"
        )
    try:
        if path.exists() or path.is_symlink():  # left over from a crash: never reuse stale content
            remove_secret_dir(attempt_id)
        path.mkdir(mode=0o700)
        os.chmod(path, 0o700)
        _write_files(path, files, need_chown)
        if need_chown:  # given away last: until then only the worker can enter it, so nobody sees it half written
            os.chown(path, uid, gid, follow_symlinks=False)
    except OSError as exc:
        _take_back(path)
        shutil.rmtree(path, ignore_errors=True)
        raise SecretDirError(f"could not write the secret dir {path}: {exc.strerror or exc}") from exc
    return path


def _write_files(path: Path, files: dict[str, str], need_chown: bool) -> None:
    uid, gid = _owner_ids()
    for name, value in files.items():
        fd = os.open(path / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o400)
        with os.fdopen(fd, "w") as handle:
            if need_chown:
                os.fchown(fd, uid, gid)
            handle.write(value)


def fill_secret_dir(key: str, files: dict[str, str]) -> Path:
    """Write ``files`` into a warm container's directory, which its container already mounts (a bind mount keeps
    the inode: the directory is filled in place, never replaced). It must be a real, empty directory."""
    _check_names(files)
    path = secret_dir_path(key)
    uid, gid = _owner_ids()
    need_chown = os.geteuid() != uid
    try:
        if path.is_symlink() or not path.is_dir():
            raise SecretDirError(f"the warm container's secret dir {path} is missing")
        _take_back(path)
        if any(path.iterdir()):
            raise SecretDirError(f"the warm container's secret dir {path} is not empty")
        _write_files(path, files, need_chown)
        os.chmod(path, 0o700)
        if need_chown:
            os.chown(path, uid, gid, follow_symlinks=False)
    except OSError as exc:
        raise SecretDirError(f"could not write the secret dir {path}: {exc.strerror or exc}") from exc
    return path


def _take_back(path: Path) -> None:
    """Own ``path`` again before removing it: a worker that is not root (CAP_CHOWN only) cannot list a 0700 directory
    of the container user."""
    try:
        if path.lstat().st_uid != os.geteuid() and os.geteuid() != 0:
            os.chown(path, os.geteuid(), os.getegid(), follow_symlinks=False)
    except OSError:
        pass


def remove_secret_dir(attempt_id: DirKey, *, retries: int = 3, delay: float = 0.2) -> bool:
    """Remove the attempt's secret dir and verify it is gone. Returns False if it still exists after retries."""
    path = secret_dir_path(attempt_id)
    for attempt_no in range(retries):
        try:
            if path.is_symlink() or path.is_file():
                path.unlink()
            elif path.exists():
                _take_back(path)
                shutil.rmtree(path)
        except OSError as exc:
            logger.warning("removing secret dir %s failed (try %s): %s", path, attempt_no + 1, exc)
        if not path.exists() and not path.is_symlink():
            return True
        time.sleep(delay)
    return False
