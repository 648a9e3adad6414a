"""An attempt's container is removed right after its session by a thread of the worker process, so the worker takes
its next attempt while the engine removes the last one's container (docs/ARCHITECTURE.md, "Data flow of one
attempt"; issue 20).

Removing a container (stop, then remove) takes 80 ms on an idle engine and 150-250 ms with ten attempts at once on
two cores; inside the session it held the worker that long after the attempt's work was done, and queued attempts
waited for it. Now the session hands the container to this process's remover once its secret dir is gone (and, in
sealed mode, its egress sockets are closed): the attempt's final status does not wait for the removal, which
normally follows within a tenth of a second. Until then what still runs in the container (a process an agent left
in the background) has no credential left to use. The container is not paused first: ``docker pause`` doubled the
engine's CPU per removal (176 against 91 ms, measured), which with ten attempts at once on two cores cost more
than the removal it took off the worker.

What a remover did not get to (the process was killed) is the cleanup sweep's: a container whose attempt is
finished is removed by ``execution.cleanup.sweep_containers``. A normal exit of the process waits for the removals
in hand (at most ``EXIT_WAIT_SECONDS``).
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading

from shared.docker.engine import DockerEngine

logger = logging.getLogger(__name__)

#: How long a process's normal exit waits for the removals it still holds.
EXIT_WAIT_SECONDS = 30.0
STOP_TIMEOUT = 2


class ContainerRemover:
    """One thread that removes the containers handed to it, in order; started at the first hand-over."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[DockerEngine, str]] = queue.SimpleQueue()
        self._lock = threading.Condition()
        self._pending = 0
        self._thread: threading.Thread | None = None

    def hand_over(self, engine: DockerEngine, container_id: str) -> None:
        with self._lock:
            self._pending += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name="container-remover", daemon=True)
                self._thread.start()
        self._queue.put((engine, container_id))

    def _work(self) -> None:
        while True:
            engine, container_id = self._queue.get()
            try:
                engine.stop_and_remove(container_id, timeout=STOP_TIMEOUT)
            except Exception:  # left to the cleanup sweep, which removes containers of finished attempts
                logger.exception("could not remove container %s", container_id[:12])
            finally:
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
