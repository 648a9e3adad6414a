"""Wake-ups between the processes of one host without Redis: UNIX datagram sockets in one private directory.

The embedded default runs the web server and the worker cluster as separate processes. The in-memory channel layer
and django-q2's ORM broker do not reach across processes, so without a wake-up a live viewer sees a new log batch,
and an idle worker a new task, only at its next database poll. Here a process that wants to be woken binds
``<ANYON_WAKEUP_DIR>/<topic>.<pid>.<random>.sock``; a sender writes one small datagram to every socket of a topic.

A wake-up is only a hint. A lost one (a full socket buffer, a process that just exited, a message too large) costs
one poll interval, never data, because every receiver also polls the database. Stale socket files of processes
that died are removed by the next sender that finds nobody listening.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import re
import secrets
import select
import socket
import stat
import threading
from pathlib import Path

from django.conf import settings

logger = logging.getLogger(__name__)

#: Larger payloads are not sent (the receivers' poll picks the change up); wake-ups are a few hundred bytes.
MAX_DATAGRAM = 64 * 1024
#: AF_UNIX addresses are at most 107 bytes on Linux.
MAX_SOCKET_PATH = 107

_sender: tuple[int, socket.socket] | None = None
_sender_lock = threading.Lock()
_warned = False


def wakeup_dir() -> Path | None:
    """The directory of this host's wake-up sockets, created private (0700); None when turned off."""
    global _warned
    configured = settings.ANYON_WAKEUP_DIR
    if not configured:
        return None
    path = Path(configured)
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        found = os.lstat(path)
        if stat.S_ISLNK(found.st_mode) or not stat.S_ISDIR(found.st_mode):
            raise OSError("it is a symlink or not a directory")
        if found.st_uid != os.geteuid():
            raise OSError(f"it belongs to uid {found.st_uid}, not to this process's uid {os.geteuid()}")
        os.chmod(path, 0o700)
    except OSError as exc:
        if not _warned:
            logger.warning("wake-ups off: cannot use ANYON_WAKEUP_DIR %s (%s); falling back to polling", path, exc)
            _warned = True
        return None
    return path


def topic_name(text: str) -> str:
    """A file-name-safe topic (queue names come from the environment)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)[:40]


def _sending_socket() -> socket.socket:
    """One unbound datagram socket per process (made again after a fork: the worker cluster forks)."""
    global _sender
    with _sender_lock:
        if _sender is None or _sender[0] != os.getpid():
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.setblocking(False)
            _sender = (os.getpid(), sock)
        return _sender[1]


def socket_path(folder: Path, topic: str, pid: int, token: str) -> Path:
    return folder / f"{topic}.{pid}.{token}.sock"


def send(topic: str, payload: bytes, *, skip: Path | None = None) -> int:
    """Send ``payload`` to every process listening on ``topic`` on this host; returns how many got it."""
    if not settings.ANYON_WAKEUP_DIR or len(payload) > MAX_DATAGRAM:
        return 0
    delivered = 0
    sock = _sending_socket()
    for path in Path(settings.ANYON_WAKEUP_DIR).glob(f"{topic}.*.sock"):  # no folder yet: nobody listens
        if path == skip:
            continue
        try:
            sock.sendto(payload, str(path))
            delivered += 1
        except ConnectionRefusedError:  # nobody bound: the process died without removing its file
            with contextlib.suppress(OSError):
                path.unlink()
        except OSError as exc:  # a full buffer (BlockingIOError), a file removed meanwhile: the poll covers it
            logger.debug("wake-up to %s not sent: %s", path.name, exc)
    return delivered


class Listener:
    """A bound socket that receives this process's wake-ups for one topic."""

    def __init__(self, topic: str) -> None:
        folder = wakeup_dir()
        if folder is None:
            raise OSError("wake-ups are turned off (ANYON_WAKEUP_DIR is empty or unusable)")
        self.path = socket_path(folder, topic, os.getpid(), secrets.token_hex(4))
        if len(str(self.path)) > MAX_SOCKET_PATH:
            raise OSError(f"wake-up socket path longer than {MAX_SOCKET_PATH} bytes: choose a shorter ANYON_WAKEUP_DIR")
        self.pid = os.getpid()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.bind(str(self.path))
        os.chmod(self.path, 0o600)

    def fileno(self) -> int:
        return self.sock.fileno()

    def receive_all(self) -> list[bytes]:
        """Every datagram waiting now (never blocks)."""
        received = []
        while True:
            try:
                received.append(self.sock.recv(MAX_DATAGRAM))
            except (BlockingIOError, InterruptedError):
                return received

    def wait(self, timeout: float) -> bool:
        """Block until a wake-up arrives or ``timeout`` passes; True if woken. Pending wake-ups are consumed."""
        ready, _, _ = select.select([self.sock], [], [], timeout)
        self.receive_all()
        return bool(ready)

    def close(self) -> None:
        if self.pid == os.getpid():  # a forked child must not remove its parent's socket
            with contextlib.suppress(OSError):
                self.path.unlink()
        self.sock.close()


def listen(topic: str) -> Listener | None:
    """A listener of this process for ``topic``, its socket file removed at exit; None when wake-ups are not
    available here (the caller keeps to its polls)."""
    try:
        listener = Listener(topic)
    except OSError as exc:
        logger.debug("no wake-ups for %s in process %s: %s", topic, os.getpid(), exc)
        return None
    atexit.register(listener.close)
    return listener
