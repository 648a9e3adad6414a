"""The maintenance schedules: created by migration, and really fired by django-q2's scheduler."""

from datetime import timedelta

import pytest
from django.utils import timezone

from execution import secret_dir

# Transactional tests elsewhere flush every table; restore the migration-created rows for these.
pytestmark = pytest.mark.django_db(serialized_rollback=True)


def test_schedules_exist_after_migrate():
    from django_q.models import Schedule

    rows = {
        func: (kind, cluster)
        for func, kind, cluster in Schedule.objects.values_list("func", "schedule_type", "cluster")
    }
    assert rows["execution.cleanup.run_scheduled_cleanup"] == ("I", "anyon")
    assert rows["secrets_app.expiry.check_token_expiry"] == ("D", None)


def test_a_worker_queue_gets_its_own_cleanup_schedule():
    from django_q.models import Schedule

    from execution.schedules import ensure_cleanup_schedule

    ensure_cleanup_schedule("host-b")
    ensure_cleanup_schedule("host-b")  # idempotent
    assert Schedule.objects.filter(func="execution.cleanup.run_scheduled_cleanup", cluster="host-b").count() == 1


@pytest.mark.docker
def test_scheduled_cleanup_runs_through_the_django_q_scheduler(docker_client, monkeypatch, settings, tmp_path):
    """The schedule fires: django-q2's scheduler (sync mode) runs the sweep, which removes an orphan dir."""
    from django_q.brokers import get_broker
    from django_q.conf import Conf
    from django_q.models import Schedule, Success
    from django_q.scheduler import scheduler

    settings.ANYON_TEMP_DIR = tmp_path
    monkeypatch.setattr(Conf, "SYNC", True)
    Schedule.objects.exclude(func="execution.cleanup.run_scheduled_cleanup").delete()
    Schedule.objects.update(next_run=timezone.now() - timedelta(minutes=1))
    secret_dir.secrets_root().mkdir(parents=True)
    (secret_dir.secrets_root() / "777777").mkdir()
    scheduler(broker=get_broker())
    assert not (secret_dir.secrets_root() / "777777").exists()
    results = Success.objects.filter(func="execution.cleanup.run_scheduled_cleanup").values_list("result", flat=True)
    assert any("secret dirs: examined 1, removed 1" in r for r in results), list(results)
