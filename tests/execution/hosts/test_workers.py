"""Worker processes' heartbeats and the check that ends the work of one that is gone (execution/hosts/workers.py): a
process gone from this machine at once, one elsewhere after ``ANYON_WORKER_LOST_SECONDS`` of silence, never one
that beats, whatever its work is doing. The real killed qcluster is tests/execution/hosts/test_lost_worker_docker.py."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from execution.attempts.actions import do_create_task, do_start_attempt, do_transition
from execution.attempts.runs import do_claim_job
from execution.hosts import workers
from execution.models import AttemptJob, AttemptStatus, JobKind, JobStatus, LogRecord, WorkerProcess
from shared.models import Alert
from tests.fixtures.queueing import held_from_workers
from tests.fixtures.waiting import wait_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def elsewhere(settings):
    """The attempts run on another Docker host's queue: nothing of theirs to remove here."""
    settings.ANYON_WORKER_QUEUE = "here"
    settings.ANYON_WORKER_LOST_SECONDS = 15
    return "elsewhere"


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def worker_row(name: str, *, pid: int, machine: str, silent_for: float) -> WorkerProcess:
    beat = timezone.now() - timedelta(seconds=silent_for)
    return WorkerProcess.objects.create(
        name=name, queue="elsewhere", machine=machine, pid=pid, started_at=beat, heartbeat_at=beat
    )


def running(alice, worker: str):
    task = do_create_task(owner=alice, title="t", repo_url="https://github.com/a/b", base_branch="main", prompt="p")
    with held_from_workers():
        attempt = do_start_attempt(task=task, plan=[])
    attempt.queue = "elsewhere"
    attempt.save(update_fields=["queue"])
    assert do_transition(attempt=attempt, to=AttemptStatus.PROVISIONING, worker=worker)
    assert do_transition(attempt=attempt, to=AttemptStatus.RUNNING)
    return attempt


def test_a_process_gone_from_this_machine_is_lost_at_once(alice, elsewhere):
    gone = worker_row("h:1:aa", pid=dead_pid(), machine=workers.machine(), silent_for=0)
    alive = worker_row("h:2:bb", pid=os.getppid(), machine=workers.machine(), silent_for=0)
    lost, kept = running(alice, gone.name), running(alice, alive.name)
    done = workers.end_work_of_lost_workers()
    assert any(f"attempt {lost.pk}" in line for line in done)
    lost.refresh_from_db(), kept.refresh_from_db()
    assert lost.status == AttemptStatus.FAILED and "no longer exists" in lost.error
    assert kept.status == AttemptStatus.RUNNING
    assert LogRecord.objects.filter(attempt=lost, text__contains=gone.name).exists()
    alert = Alert.objects.get(kind="worker_lost")
    assert alert.attempt_id == lost.pk and alert.user == alice
    assert workers.end_work_of_lost_workers() == []  # once: the next look finds nothing to end


def test_a_process_elsewhere_is_lost_after_its_silence_not_before(alice, elsewhere):
    other_machine = "another-boot:pid:[1]"
    quiet = worker_row("far:7:cc", pid=7, machine=other_machine, silent_for=10)  # pid 7 means nothing here
    attempt = running(alice, quiet.name)
    assert workers.end_work_of_lost_workers() == []
    WorkerProcess.objects.filter(pk=quiet.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=16))
    assert workers.end_work_of_lost_workers()
    attempt.refresh_from_db()
    assert attempt.status == AttemptStatus.FAILED and "no heartbeat since" in attempt.error


def test_a_slow_attempt_of_a_beating_worker_is_left_alone(alice, elsewhere):
    """Its own heartbeat may be minutes old (a long provisioning, a quiet step): its worker beats, so it works."""
    beating = worker_row("h:3:dd", pid=4194303, machine="another-boot:pid:[1]", silent_for=1)
    attempt = running(alice, beating.name)
    type(attempt).objects.filter(pk=attempt.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    assert workers.end_work_of_lost_workers() == []
    attempt.refresh_from_db()
    assert attempt.status == AttemptStatus.RUNNING


def test_the_running_job_of_a_lost_worker_ends_failed(alice, elsewhere):
    gone = worker_row("h:4:ee", pid=dead_pid(), machine=workers.machine(), silent_for=0)
    attempt = running(alice, "h:5:ff")
    do_transition(attempt=attempt, to=AttemptStatus.SUCCEEDED)
    job = AttemptJob.objects.create(attempt=attempt, kind=JobKind.FOLLOW_UP, prompt="more")
    assert do_claim_job(job=job, worker=gone.name)
    workers.end_work_of_lost_workers()
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and gone.name in job.error


def test_a_worker_process_records_itself_with_each_beat(settings):
    workers.do_worker_heartbeat()
    row = WorkerProcess.objects.get(name=workers.worker_identity())
    first = row.heartbeat_at
    workers.do_worker_heartbeat()
    row.refresh_from_db()
    assert row.heartbeat_at >= first and row.pid == os.getpid() and row.machine == workers.machine()
    assert row.queue == settings.ANYON_WORKER_QUEUE


def test_a_killed_process_not_yet_reaped_counts_as_gone():
    process = subprocess.Popen(["sleep", "60"])
    try:
        assert workers.pid_exists(process.pid)
        process.kill()
        wait_for(lambda: not workers.pid_exists(process.pid), timeout=5, what="the zombie seen as gone")
        assert Path(f"/proc/{process.pid}").exists()  # not reaped yet: a zombie, which does no work
    finally:
        process.kill()
        process.wait()


def test_silence_is_counted_on_the_wall_clock_across_midnight_at_a_month_end(alice, elsewhere):
    """A worker elsewhere that last beat just before midnight UTC on the last day of February is still working 14 s
    later (in March), and lost 16 s later; the message names its last beat in UTC."""
    import time_machine

    with time_machine.travel(datetime(2027, 2, 28, 23, 59, 55, tzinfo=UTC), tick=False) as clock:
        quiet = worker_row("far:8:dd", pid=8, machine="another-boot:pid:[1]", silent_for=0)
        attempt = running(alice, quiet.name)
        clock.move_to(datetime(2027, 3, 1, 0, 0, 9, tzinfo=UTC))
        assert workers.end_work_of_lost_workers() == []
        clock.move_to(datetime(2027, 3, 1, 0, 0, 11, tzinfo=UTC))
        assert workers.end_work_of_lost_workers()
    attempt.refresh_from_db()
    assert attempt.status == AttemptStatus.FAILED and "no heartbeat since 2027-02-28 23:59:55 UTC" in attempt.error
