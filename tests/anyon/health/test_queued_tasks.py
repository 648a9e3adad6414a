"""doctor's look at the task queue before an upgrade: a queued task whose function no longer imports is named."""

from __future__ import annotations

import pytest
from django_q.models import OrmQ
from django_q.signing import SignedPackage

from anyon import health

pytestmark = pytest.mark.django_db


def queue(func: str) -> None:
    OrmQ.objects.create(key="anyon", payload=SignedPackage.dumps({"id": "x", "func": func, "args": (1,)}))


def test_queued_tasks_whose_function_moved_are_named(settings):
    settings.REDIS_URL = ""
    check = health.check_queued_tasks()
    assert check.status == health.OK and "0 waiting" in check.detail
    queue("execution.runner.run_job")
    check = health.check_queued_tasks()
    assert check.status == health.OK and "1 waiting" in check.detail, check.detail
    queue("execution.runner.moved_away.run_job")
    queue("execution.runner.moved_away.run_job")
    OrmQ.objects.create(key="anyon", payload="not a signed package")
    check = health.check_queued_tasks()
    assert check.status == health.WARN and not check.required
    assert "execution.runner.moved_away.run_job (2)" in check.detail and "unreadable" in check.detail, check.detail
    assert "Upgrading: drain the queue first" in check.fix
