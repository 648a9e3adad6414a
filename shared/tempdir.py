"""The host directory under which per-attempt secret dirs live (ANYON_TEMP_DIR), and whether this process can give
a directory to the container user."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

CAP_CHOWN = 0  # bit of CAP_CHOWN in the capability sets of /proc/<pid>/status


class TempDirError(OSError):
    """The temp dir is not a private directory of this service user; the message says what to do."""


def ensure_temp_dir(path: Path) -> Path:
    """Create ``path`` if missing and force mode 0700: it holds plaintext secrets while runs are active.

    An existing ``path`` must be a real directory (not a symlink) owned by this process's user: another local user
    could have made ``/tmp/anyon`` first, and would then read every secret written below it. Raises TempDirError.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    problem = temp_dir_problem(path)
    if problem:
        raise TempDirError(problem)
    # Opened without following a link, so the mode is set on what was checked, not on what a link points at.
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        if os.fstat(fd).st_uid != os.geteuid():  # replaced between the check and the open
            raise TempDirError(temp_dir_problem(path) or f"{path} changed while it was checked")
        os.fchmod(fd, 0o700)
    finally:
        os.close(fd)
    return path


def temp_dir_problem(path: Path) -> str:
    """Why ``path`` cannot be this service's temp dir ("" when it can; a missing one can be created)."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return ""
    uid = os.geteuid()
    remedy = (
        f"remove it (or choose another ANYON_TEMP_DIR, ideally a tmpfs only this user can write, see "
        f"docs/DEPLOYMENT.md) and start again: it is then created 0700 for uid {uid}"
    )
    if stat.S_ISLNK(info.st_mode):
        return f"{path} is a symlink (to {os.readlink(path)}), not a directory of its own: {remedy}"
    if not stat.S_ISDIR(info.st_mode):
        return f"{path} is not a directory: {remedy}"
    if info.st_uid != uid:
        return (
            f"{path} belongs to uid {info.st_uid}, not to this service user (uid {uid}): another local user may have "
            f"created it to read the secrets written below it; {remedy}"
        )
    return ""


def has_cap_chown() -> bool:
    """Whether this process may change the owner of files (CAP_CHOWN in its effective set; root has it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> CAP_CHOWN & 1)
    except (OSError, ValueError, IndexError):
        pass
    return os.geteuid() == 0


def can_hand_over(uid: int) -> bool:
    """Whether this process can give a directory it creates to ``uid``: it is that uid, or it may chown."""
    return os.geteuid() == uid or has_cap_chown()
