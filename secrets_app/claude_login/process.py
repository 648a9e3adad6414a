"""The login command in a pseudo-terminal: ``ANYON_CLAUDE_LOGIN_COMMAND`` (by default ``claude setup-token`` in a
fresh container of the runtime image), started, read, written to, and stopped with its container."""

from __future__ import annotations

import logging
import shlex
import threading

import pexpect
from django.conf import settings

logger = logging.getLogger(__name__)

LATE_CONTAINER_CHECK = 5.0  # seconds after the end of a login whose container was not found yet
DIMENSIONS = (50, 4000)  # rows, columns: wide, so the CLI never wraps the authorize URL


class StartFailed(Exception):
    """The login command could not be started."""


class Ended(Exception):
    """The login command exited (its output is all read)."""


def login_container_name(session_id: str) -> str:
    return f"anyon-login-{session_id}"


def login_argv(session_id: str) -> list[str]:
    """The login command, with {name}, {image}, {instance}, {network}, {memory}, {pids} filled in (each argv item
    separately). A ``docker run`` that sets no memory or process limit gets ANYON_CLAUDE_LOGIN_MEMORY and
    ANYON_CLAUDE_LOGIN_PIDS: one user's login cannot take the host's memory or processes."""
    values = {
        "name": login_container_name(session_id),
        "image": settings.ANYON_CLOUD_IMAGE,
        "instance": settings.ANYON_INSTANCE,
        "network": settings.ANYON_CLAUDE_LOGIN_NETWORK,
        "memory": settings.ANYON_CLAUDE_LOGIN_MEMORY,
        "pids": str(settings.ANYON_CLAUDE_LOGIN_PIDS),
    }
    argv = [part.format(**values) for part in shlex.split(settings.ANYON_CLAUDE_LOGIN_COMMAND)]
    if len(argv) > 2 and argv[:2] == ["docker", "run"]:
        limits = []
        if not any(arg == "--memory" or arg.startswith(("--memory=", "-m")) for arg in argv):
            memory = settings.ANYON_CLAUDE_LOGIN_MEMORY
            limits += ["--memory", memory, "--memory-swap", memory]  # the same value: no swap on top
        if not any(arg == "--pids-limit" or arg.startswith("--pids-limit=") for arg in argv):
            limits += ["--pids-limit", str(settings.ANYON_CLAUDE_LOGIN_PIDS)]
        argv[2:2] = limits
    return argv


class LoginProcess:
    """One run of the login command for the session ``session_id`` (its container is named after it)."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.child: pexpect.spawn | None = None

    def start(self) -> None:
        """Start the command in a PTY; raises StartFailed."""
        argv = login_argv(self.session_id)
        try:
            self.child = pexpect.spawn(
                argv[0], argv[1:], dimensions=DIMENSIONS, encoding="utf-8", codec_errors="replace", echo=False
            )
        except (pexpect.ExceptionPexpect, OSError) as exc:
            raise StartFailed(str(exc)) from exc

    def read(self, timeout: float = 0.2) -> str | None:
        """The next output, or None when there was none for ``timeout`` seconds; raises Ended once it exited."""
        try:
            return self.child.read_nonblocking(4096, timeout=timeout)
        except pexpect.TIMEOUT:
            return None
        except pexpect.EOF as exc:
            raise Ended from exc

    def send(self, text: str) -> None:
        self.child.send(text)

    def alive(self) -> bool:
        return self.child is not None and self.child.isalive()

    def stop(self) -> None:
        """Kill the CLI and, when it ran in a container, remove the container (killing the docker client alone
        would leave it running)."""
        if self.alive():
            try:
                self.child.terminate(force=True)
            except Exception:
                logger.debug("terminating login %s failed", self.session_id, exc_info=True)
        if not self.remove_container():
            # The docker client may have been killed while its create request was on the way: look once more
            # when that container would exist.
            timer = threading.Timer(LATE_CONTAINER_CHECK, self.remove_container)
            timer.daemon = True
            timer.start()

    def remove_container(self) -> bool:
        """Remove this login's container (SIGKILL, no grace: it holds nothing to keep). True if there was one."""
        if "{name}" not in settings.ANYON_CLAUDE_LOGIN_COMMAND:
            return True  # a command that names no container (the CLI on the host): nothing to remove
        try:
            from shared.docker.engine import DockerEngine

            engine = DockerEngine()
            info = engine.inspect(login_container_name(self.session_id))
            if info:
                engine.stop_and_remove(info["Id"], timeout=0)
            return info is not None
        except Exception:
            logger.warning("could not remove the login container of %s", self.session_id, exc_info=True)
            return False
