"""An attempt's container is removed right after its session by a thread of the worker process, so the worker takes
its next attempt while the engine removes the last one's container (docs/ARCHITECTURE.md, "Data flow of one
attempt").

Removing a container (stop, then remove) takes 80 ms on an idle engine and 150-250 ms with ten attempts at once on
two cores; inside the session it held the worker that long after the attempt's work was done, and queued attempts
waited for it. Now the session hands the container to this process's remover once its secret dir is gone (and, in
sealed mode, its egress sockets are closed): the attempt's final status does not wait for the removal. Until then
what still runs in the container (a process an agent left in the background) has no credential left to use.

The removal yields to attempts of this host that are starting (waiting for a worker, or provisioning), for at most
``YIELD_AT_MOST_SECONDS`` after the hand-over: nearly all of a removal's cost is the engine's (the task's
teardown: 70-90 ms of CPU here, as much as a ``docker exec``), and during a burst it was taken from the attempts
whose first step was about to start. The container is removed in one call (``docker rm -f``: SIGKILL, then
remove), not paused or stopped first: ``docker pause`` doubled the engine's CPU per removal (176 against 91 ms,
measured) and a graceful stop only gives what the agent left more time.

What a remover did not get to (the process was killed) is the cleanup sweep's: a container whose attempt is
finished is removed by ``execution.sweeps.cleanup.sweep_containers``. A normal exit of the process waits for the
removals in hand (at most ``EXIT_WAIT_SECONDS``).
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
from collections.abc import Callable

from django.conf import settings
from django.db import connection

from execution.attempts import selectors
from shared.docker.engine import DockerEngine

logger = logging.getLogger(__name__)

#: How long a process's normal exit waits for the removals it still holds.
EXIT_WAIT_SECONDS = 30.0
#: How long after its hand-over a removal may wait for the host's starting attempts; and how often it looks.
YIELD_AT_MOST_SECONDS = 5.0
YIELD_CHECK_SECONDS = 0.5


def host_is_starting_attempts() -> bool:
    """Whether attempts of this worker's queue are on their way to their first step (a failed look counts as no)."""
    try:
        return selectors.attempts_starting(queue=settings.ANYON_WORKER_QUEUE)
    except Exception:
        logger.exception("could not look for starting attempts; removing now")
        return False


class ContainerRemover:
    """One thread that removes the containers handed to it, in order; started at the first hand-over."""

    def __init__(self, *, busy: Callable[[], bool] = host_is_starting_attempts) -> None:
        self._busy = busy
        self._queue: queue.SimpleQueue[tuple[DockerEngine, str, float]] = queue.SimpleQueue()
        self._lock = threading.Condition()
        self._pending = 0
        self._thread: threading.Thread | None = None

    def hand_over(self, engine: DockerEngine, container_id: str) -> None:
        with self._lock:
            self._pending += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name="container-remover", daemon=True)
                self._thread.start()
        self._queue.put((engine, container_id, time.monotonic() + YIELD_AT_MOST_SECONDS))

    def _work(self) -> None:
        while True:
            engine, container_id, yield_until = self._queue.get()
            try:
                while time.monotonic() < yield_until and self._busy():
                    time.sleep(YIELD_CHECK_SECONDS)
                engine.remove_now(container_id)
            except Exception:  # left to the cleanup sweep, which removes containers of finished attempts
                logger.exception("could not remove container %s", container_id[:12])
            finally:
                if self._queue.empty():
                    connection.close()  # the thread's own connection, if the look made one: not held while idle
                with self._lock:
                    self._pending -= 1
                    self._lock.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        """Until every container handed over is removed (or its removal failed); False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: self._pending == 0, timeout=timeout)


_remover = ContainerRemover()
atexit.register(_remover.wait, EXIT_WAIT_SECONDS)


def remove_after_session(engine: DockerEngine, container_id: str) -> None:
    """Remove the container in the background."""
    _remover.hand_over(engine, container_id)


def wait_for_removals(timeout: float | None = None) -> bool:
    """Until this process's handed-over containers are removed (tests; a process about to exit)."""
    return _remover.wait(timeout)
