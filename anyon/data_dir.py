"""The data dir (``ANYON_DATA_DIR``) and the SQLite files in it are private to the service user: the database holds
session keys, the audit trail and every ciphertext, and its -wal/-shm files hold recent pages of it.

The folder is created 0700 when settings load; each new connection makes the database and its -wal/-shm (and a
rollback -journal) 0600, whatever umask or earlier version created them.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

logger = logging.getLogger(__name__)

SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal")


def ensure_data_dir(path: Path) -> Path:
    """Create ``path`` 0700 if it is missing (an existing folder is left as it is; ``doctor`` reports its mode)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        return path
    os.chmod(path, 0o700)  # mkdir's mode is reduced by the umask, never widened: this only states the intent
    return path


def sqlite_path(settings_dict: dict) -> Path | None:
    """The database file of a SQLite connection's settings, None for other engines and in-memory databases."""
    if "sqlite3" not in settings_dict.get("ENGINE", ""):
        return None
    name = str(settings_dict.get("NAME") or "")
    if not name or name == ":memory:" or name.startswith("file:") or "mode=memory" in name:
        return None
    return Path(name)


def restrict_sqlite_files(sender, connection, **kwargs) -> None:
    """``connection_created``: make the database files of a new SQLite connection 0600 (this user's own only)."""
    if connection.vendor != "sqlite":
        return
    path = sqlite_path(connection.settings_dict)
    if path is None:
        return
    for suffix in SQLITE_SUFFIXES:
        file = Path(f"{path}{suffix}")
        try:
            info = file.lstat()
            if stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) & 0o077:
                os.chmod(file, stat.S_IMODE(info.st_mode) & 0o600)
        except FileNotFoundError:
            continue
        except OSError as exc:
            logger.warning("could not make %s private (0600): %s", file, exc)
