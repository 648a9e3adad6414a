"""Docker hosts as the workers report them: placement over healthy hosts (least busy), draining, a host whose
engine stopped, a host whose worker went silent (its attempts ended by another host), and what doctor, the admin
dashboard and the admin show. The real two-engine run is tests/scaleout/test_two_engines.py."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.utils import timezone

from anyon.health import check_docker_hosts
from execution.attempts.actions import do_create_task, do_start_attempt, do_transition, pick_queue
from execution.hosts import actions as hosts
from execution.hosts.actions import do_host_heartbeat, do_set_draining
from execution.models import Attempt, AttemptStatus, DockerHost, LogRecord
from execution.sweeps.cleanup import sweep_lost_hosts
from execution.sweeps.host_beat import beat_once
from shared.models import Alert
from tests.fixtures.queueing import held_from_workers

pytestmark = pytest.mark.django_db


@pytest.fixture
def queues(settings):
    settings.ANYON_WORKER_QUEUES = ["host-a", "host-b", "host-c"]
    settings.ANYON_WORKER_QUEUE = "web"
    settings.ANYON_HOST_LOST_SECONDS = 30
    settings.ANYON_MAX_ACTIVE_ATTEMPTS_PER_USER = 0
    for name in settings.ANYON_WORKER_QUEUES:
        do_host_heartbeat(name=name, docker_host="", worker=f"{name}:1", engine_ok=True, engine_version="20.10")
    return settings.ANYON_WORKER_QUEUES


@pytest.fixture
def task(alice):
    return do_create_task(owner=alice, title="t", repo_url="https://github.com/a/b", base_branch="main", prompt="p")


def start(task, n: int = 1) -> list[Attempt]:
    with held_from_workers():
        return [do_start_attempt(task=task, plan=[]) for _ in range(n)]


def test_new_attempts_go_to_the_least_busy_healthy_host(queues, task):
    placed = [a.queue for a in start(task, 6)]
    assert sorted(placed) == ["host-a", "host-a", "host-b", "host-b", "host-c", "host-c"]


def test_draining_engine_down_and_lost_hosts_take_no_new_attempts(queues, task):
    do_set_draining(names=["host-a"], draining=True, by="test")
    do_host_heartbeat(name="host-b", docker_host="", worker="b:1", engine_ok=False, engine_error="refused")
    assert {a.queue for a in start(task, 3)} == {"host-c"}
    DockerHost.objects.filter(name="host-c").update(heartbeat_at=timezone.now() - timedelta(seconds=31))
    # Nothing healthy: the attempt still gets a queue (the least busy), and waits there for a host to come back.
    assert pick_queue() == "host-a"
    do_set_draining(names=["host-a"], draining=False, by="test")
    assert {pick_queue() for _ in range(3)} == {"host-a"}


def test_a_queue_no_worker_reported_yet_takes_attempts(settings, task):
    settings.ANYON_WORKER_QUEUES = ["fresh"]
    assert start(task)[0].queue == "fresh"


def test_heartbeat_returns_the_engine_state_it_replaced(queues):
    assert do_host_heartbeat(name="new", docker_host="", worker="w", engine_ok=True) is None
    assert do_host_heartbeat(name="new", docker_host="", worker="w", engine_ok=False, engine_error="x") is True
    assert do_host_heartbeat(name="new", docker_host="", worker="w", engine_ok=True) is False
    host = DockerHost.objects.get(name="new")
    assert host.engine_ok and host.engine_error == "" and host.engine_seen_at is not None


def test_a_silent_hosts_attempts_are_ended_by_another_host(queues, task, settings):
    silent_run, fresh_run, mine = start(task, 3)
    old = timezone.now() - timedelta(seconds=60)
    cases = ((silent_run, "host-b", old), (fresh_run, "host-b", timezone.now()), (mine, "web", old))
    for attempt, queue, beat in cases:
        Attempt.objects.filter(pk=attempt.pk).update(queue=queue)
        do_transition(attempt=attempt, to=AttemptStatus.PROVISIONING, heartbeat_at=beat, worker="b:1")
        do_transition(attempt=attempt, to=AttemptStatus.RUNNING)
    DockerHost.objects.filter(name="host-b").update(heartbeat_at=old)
    report = sweep_lost_hosts()
    assert report.removed == [f"attempt {silent_run.pk}"]
    silent_run.refresh_from_db()
    assert silent_run.status == AttemptStatus.FAILED
    assert "The worker of Docker host host-b (host-b:1) stopped: no heartbeat since" in silent_run.error
    assert LogRecord.objects.filter(attempt=silent_run, text__contains="stopped: no heartbeat").exists()
    # Its heartbeat is recent (the worker may just be slow to report the host) and the sweeping host's own: left.
    assert Attempt.objects.get(pk=fresh_run.pk).status == AttemptStatus.RUNNING
    assert Attempt.objects.get(pk=mine.pk).status == AttemptStatus.RUNNING
    assert Alert.objects.get(kind="worker_lost").message.startswith("Docker host host-b:")
    assert sweep_lost_hosts().removed == []  # ended once


def test_a_lost_hosts_attempts_end_with_their_alert_or_not_at_all(queues, task, monkeypatch):
    """Ending the attempts and raising the alert are one transaction: if the alert cannot be written, the attempts
    stay as they were for the next sweep (before, they ended and the alert could go missing)."""
    (attempt,) = start(task, 1)
    old = timezone.now() - timedelta(seconds=60)
    Attempt.objects.filter(pk=attempt.pk).update(queue="host-b")
    do_transition(attempt=attempt, to=AttemptStatus.PROVISIONING, heartbeat_at=old, worker="b:1")
    DockerHost.objects.filter(name="host-b").update(heartbeat_at=old)

    def broken_alert(**kwargs):
        raise RuntimeError("the alert could not be written")

    monkeypatch.setattr(hosts, "do_raise_alert", broken_alert)
    with pytest.raises(RuntimeError):
        sweep_lost_hosts()
    attempt.refresh_from_db()
    assert attempt.status == AttemptStatus.PROVISIONING and attempt.error == ""
    assert not LogRecord.objects.filter(attempt=attempt).exists()
    monkeypatch.undo()
    assert sweep_lost_hosts().removed == [f"attempt {attempt.pk}"]
    assert Alert.objects.get(kind="worker_lost").message.endswith(f"Ended: attempt {attempt.pk}")


def test_a_worker_whose_engine_does_not_answer_marks_its_host_down(queues, settings):
    settings.ANYON_WORKER_QUEUE = "host-a"
    settings.DOCKER_HOST = "unix:///nonexistent/docker.sock"
    beat_once()
    host = DockerHost.objects.get(name="host-a")
    assert not host.engine_ok and "nonexistent" in host.engine_error
    assert Alert.objects.get(kind="docker_host_lost").message.startswith("Docker host host-a: its engine stopped")
    assert pick_queue() in ("host-b", "host-c")
    beat_once()
    assert Alert.objects.get(kind="docker_host_lost").count == 1  # still down: no second alert


def test_doctor_dashboard_and_admin_show_every_host(queues, task, client, settings, capsys):
    settings.ANYON_WORKER_QUEUES = [*queues, "never-seen"]
    down = {"docker_host": "unix:///run/b.sock", "worker": "b:1", "engine_ok": False, "engine_error": "gone"}
    do_host_heartbeat(name="host-b", **down)
    do_set_draining(names=["host-c"], draining=True, by="test")
    (running,) = start(task)
    Attempt.objects.filter(pk=running.pk).update(queue="host-a")
    settings.DOCKER_HOST = "unix:///nonexistent/docker.sock"
    with pytest.raises(CommandError):  # no worker and no engine here: doctor fails, and still lists the hosts
        call_command("doctor")
    out = capsys.readouterr().out
    assert "docker hosts" in out and "host-b engine down (0 active)" in out
    check = check_docker_hosts()
    assert check.status == "warn" and "host-b" in check.fix
    assert check.detail == (
        "host-a healthy (1 active); host-b engine down (0 active); host-c draining (0 active); "
        "never-seen unknown (0 active)"
    )
    staff = User.objects.create_superuser("ops", password="ops password 123")
    client.force_login(staff)
    page = client.get("/admin/").content.decode()
    assert 'data-testid="ops-host-state-host-b"><strong style="color:#ba2121">engine down' in page
    assert 'data-testid="ops-host-state-host-a">✓ healthy' in page
    assert "unix:///run/b.sock" in page and "no worker has reported it" in page
    hosts = client.get("/admin/execution/dockerhost/").content.decode()
    assert 'data-testid="host-state-host-b">engine down: gone' in hosts
    assert 'data-testid="host-state-host-c">draining' in hosts
    attempts = client.get("/admin/execution/attempt/?queue=host-a").content.decode()
    assert f"/admin/execution/attempt/{running.pk}/change/" in attempts
    client.post(
        "/admin/execution/dockerhost/",
        {"action": "drain_selected", "_selected_action": [DockerHost.objects.get(name="host-a").pk]},
    )
    assert DockerHost.objects.get(name="host-a").draining
    assert pick_queue() == "never-seen"  # the only one not drained, down or lost
    client.post(
        "/admin/execution/dockerhost/",
        {"action": "undrain_selected", "_selected_action": list(DockerHost.objects.values_list("pk", flat=True))},
    )
    assert not DockerHost.objects.filter(draining=True).exists()


def test_sync_mode_runs_no_worker_start_in_the_callers_process(monkeypatch):
    """django-q2's sync mode (used by the scheduler tests) sends post_spawn in the caller's own process: no host
    heartbeat thread may start there (it would beat for a host from a test or web process forever)."""
    import threading

    from django_q.conf import Conf

    from execution.apps import cleanup_when_worker_starts
    from execution.sweeps import host_beat

    monkeypatch.setattr(Conf, "SYNC", True)
    monkeypatch.setattr(host_beat, "_started", set())
    cleanup_when_worker_starts(sender="django_q", proc_name="Process-1")
    assert host_beat._started == set()
    assert not [t for t in threading.enumerate() if t.name == "anyon-host-beat"]
