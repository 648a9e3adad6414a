"""A worker process hard-killed mid-attempt (SIGKILL: systemd's stop escalation, the OOM killer): real qcluster
processes, the real engine. Its attempt must end failed, with a ``worker_lost`` alert, its container and secret dir
removed, within the documented bound: at the start of a worker restarted on the same machine, and, without a
restart, by another live worker within one heartbeat (docs/ARCHITECTURE.md, "Lost workers")."""

from __future__ import annotations

import json
import os
import signal
import tempfile
import threading
import time
from datetime import timedelta

import docker
import pytest
from django.test import Client
from websockets.sync.client import connect

from execution.attempts import secret_dir
from execution.attempts.actions import do_start_attempt
from execution.attempts.containers import container_name
from execution.models import Attempt, AttemptStatus, WorkerProcess
from shared.alerts import AlertKind
from shared.models import Alert
from tests.execution.conftest import custom, logs, step_exec_running
from tests.fixtures.processes import start_asgi, subprocess_env
from tests.fixtures.waiting import wait_for

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]

HEARTBEAT = 1.0
#: One heartbeat, and the slack of a loaded two-core machine for one check's reads and writes.
SLACK = 3.0


@pytest.fixture
def wake_dir() -> str:
    """The web server and the workers wake each other here (a short path: UNIX socket names are short)."""
    return tempfile.mkdtemp(prefix="lw-", dir="/tmp")


@pytest.fixture
def web(world, wake_dir, settings):
    """A web server whose viewers hear of a change only through a wake-up (its poll is 30 s)."""
    server = start_asgi(
        "lost-worker-web",
        subprocess_env(
            ANYON_LOG_POLL_SECONDS="30", ANYON_WAKEUP_DIR=wake_dir, ANYON_TEMP_DIR=str(settings.ANYON_TEMP_DIR)
        ),
    )
    yield server
    server.stop()


class Viewer(threading.Thread):
    """The attempt's page, open: its websocket, recording each status it is sent, until ``end``."""

    def __init__(self, server, attempt: Attempt, user) -> None:
        super().__init__(daemon=True)
        client = Client()
        client.force_login(user)
        port = server.url.rsplit(":", 1)[1]
        self.url = f"ws://127.0.0.1:{port}/ws/attempts/{attempt.pk}/logs/"
        self.headers = {"Cookie": f"sessionid={client.cookies['sessionid'].value}", "Origin": server.url}
        self.statuses: list[tuple[float, str, str]] = []
        self.ended = threading.Event()
        self.start()

    def run(self) -> None:
        with connect(self.url, additional_headers=self.headers, open_timeout=20) as ws:
            while True:
                message = json.loads(ws.recv(timeout=120))
                if message["type"] == "status":
                    shown = message["attempt"]
                    self.statuses.append((time.time(), shown["status"], shown["error"]))
                if message["type"] == "end":
                    self.ended.set()
                    return


@pytest.fixture
def start_worker(world, worker_factory, wake_dir, settings):
    def start(**extra):
        return worker_factory(
            ANYON_WAKEUP_DIR=wake_dir,
            ANYON_TEMP_DIR=str(settings.ANYON_TEMP_DIR),
            ANYON_CLOUD_NETWORK="none",
            ANYON_HOST_HEARTBEAT_SECONDS=str(HEARTBEAT),
            ANYON_WORKER_LOST_SECONDS="3",
            ANYON_WORKERS="1",
            **extra,
        )

    return start


def running_attempt(world, docker_client) -> Attempt:
    attempt = do_start_attempt(task=world.task(), plan=[custom("sleep", "600", title="a long step")])
    wait_for(lambda: step_exec_running(docker_client, attempt.pk, "sleep"), timeout=90, what="the long step running")
    attempt.refresh_from_db()
    assert attempt.status == AttemptStatus.RUNNING and attempt.worker
    assert secret_dir.secret_dir_path(attempt.pk).exists()  # mounted mode: the credentials are on disk now
    return attempt


def kill_group(process) -> None:
    os.killpg(process.proc.pid, signal.SIGKILL)
    process.proc.wait(timeout=10)


def ended(attempt: Attempt) -> Attempt | None:
    attempt.refresh_from_db()
    return attempt if attempt.status == AttemptStatus.FAILED else None


def assert_cleaned_up(attempt: Attempt, docker_client) -> None:
    assert "stopped" in attempt.error and attempt.worker in attempt.error
    assert attempt.worker in logs(attempt)  # the system line the open page shows with the final status
    alert = Alert.objects.get(kind=AlertKind.WORKER_LOST)
    assert alert.attempt_id == attempt.pk and f"attempt {attempt.pk}" in alert.message
    wait_for(lambda: not secret_dir.secret_dir_path(attempt.pk).exists(), timeout=10, what="the secret dir removed")

    def container_gone() -> bool:
        try:
            docker_client.containers.get(container_name(attempt.pk))
        except docker.errors.NotFound:
            return True
        return False

    wait_for(container_gone, timeout=20, what="the container removed")


def test_a_restarted_worker_ends_the_attempt_of_the_killed_one_at_its_start(world, start_worker, docker_client, web):
    first = start_worker()
    attempt = running_attempt(world, docker_client)
    page = Viewer(web, attempt, world.user)
    wait_for(lambda: page.statuses, timeout=20, what="the open page's first status")
    assert page.statuses[-1][1] == AttemptStatus.RUNNING
    kill_group(first)  # the whole cluster, as systemd's stop escalation does
    time.sleep(3 * HEARTBEAT)
    assert Attempt.objects.get(pk=attempt.pk).status == AttemptStatus.RUNNING  # nobody alive to notice yet

    second = start_worker()
    attempt = wait_for(lambda: ended(attempt), timeout=60, what="the attempt ended by the new worker")
    row = WorkerProcess.objects.exclude(name=attempt.worker).order_by("-started_at").first()
    assert row is not None and row.queue == attempt.queue
    # Ended at the new worker's first check, not after some timeout: within one heartbeat of its start.
    assert attempt.finished_at - row.started_at < timedelta(seconds=HEARTBEAT + SLACK), second.output()[-2000:]
    assert_cleaned_up(attempt, docker_client)
    # The open page was told at once (its poll is 30 s: only the final status's wake-up can have brought it).
    assert page.ended.wait(10), page.statuses
    shown_at, status, error = page.statuses[-1]
    assert status == AttemptStatus.FAILED and attempt.worker in error
    assert shown_at - attempt.finished_at.timestamp() < SLACK


def test_another_live_worker_ends_the_attempt_of_a_killed_one_without_a_restart(world, start_worker, docker_client):
    workers = [start_worker(), start_worker()]  # two clusters of one process each on this host's queue
    wait_for(lambda: WorkerProcess.objects.count() >= 2, timeout=60, what="both workers beating")
    attempt = running_attempt(world, docker_client)
    pid = int(attempt.worker.split(":")[1])
    holder = next(w for w in workers if os.getpgid(pid) == w.proc.pid)
    killed_at = time.time()
    kill_group(holder)

    attempt = wait_for(lambda: ended(attempt), timeout=30, what="the attempt ended by the live worker")
    took = attempt.finished_at.timestamp() - killed_at
    assert took < HEARTBEAT + SLACK, f"ended {took:.1f} s after the kill"
    assert_cleaned_up(attempt, docker_client)
    survivor = next(w for w in workers if w is not holder)
    assert survivor.proc.poll() is None
