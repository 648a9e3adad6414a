"""``tests/fixtures/queueing.held_from_workers``, with which tests start the attempts and jobs they run in their own
process: the actions queue them as in production, and a live worker of the same queue never takes them."""

from __future__ import annotations

import pytest
from django_q.models import OrmQ
from django_q.tasks import async_task, result

from execution.attempts.actions import do_create_task, do_start_attempt, do_start_follow_up
from execution.models import Attempt, AttemptStatus, JobStatus
from tests.fixtures.queueing import held_from_workers

pytestmark = pytest.mark.django_db(transaction=True)


def test_held_attempts_and_jobs_stay_queued_while_a_live_worker_runs_what_came_after(
    worker_factory, alice, settings, tmp_path
):
    settings.ANYON_WAKEUP_DIR = str(tmp_path / "wake")
    worker_factory(ANYON_WAKEUP_DIR=settings.ANYON_WAKEUP_DIR)  # woken by each held task's queueing, too
    task = do_create_task(owner=alice, title="t", repo_url="https://github.com/a/b", base_branch="main", prompt="p")
    assert settings.ANYON_MAX_ACTIVE_ATTEMPTS_PER_USER == 2
    with held_from_workers() as held:
        attempts = [do_start_attempt(task=task, plan=[]) for _ in range(3)]
    assert [a.waiting_for_slot for a in attempts] == [False] * 3  # past the limit too: none waits for a slot
    assert settings.ANYON_MAX_ACTIVE_ATTEMPTS_PER_USER == 2  # the limit is back
    Attempt.objects.filter(pk=attempts[0].pk).update(
        status=AttemptStatus.SUCCEEDED, workspace_volume="anyon-ws-held", base_commit="a" * 40
    )
    attempts[0].refresh_from_db()
    with held_from_workers() as held_jobs:
        job = do_start_follow_up(attempt=attempts[0], prompt="more")
    rows = held + held_jobs
    assert [row.key for row in rows] == [f"held:{settings.ANYON_WORKER_QUEUE}"] * 4
    assert {row.task["name"] for row in rows} == {*(f"attempt-{a.pk}" for a in attempts), f"attempt-job-{job.pk}"}

    # The worker serves the attempts' queue: a task queued after the held ones runs, and they are still untouched.
    assert result(async_task("math.floor", 2.5), wait=60_000) == 2
    assert sorted(OrmQ.objects.filter(pk__in=[r.pk for r in rows]).values_list("pk", "lock")) == sorted(
        (r.pk, r.lock) for r in rows
    )  # none claimed (a claim moves the lock; a done task's row is deleted)
    statuses = Attempt.objects.filter(pk__in=[a.pk for a in attempts[1:]]).values_list("status", flat=True)
    assert list(statuses) == [AttemptStatus.QUEUED] * 2
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
