"""The maintenance schedules: created by migration, and really fired by django-q2's scheduler."""

from datetime import timedelta

import pytest
from django.utils import timezone

from execution.attempts import secret_dir

# Transactional tests elsewhere flush every table; restore the migration-created rows for these.
pytestmark = pytest.mark.django_db(serialized_rollback=True)


def test_schedules_exist_after_migrate():
    from django_q.models import Schedule

    rows = {
        func: (kind, cluster)
        for func, kind, cluster in Schedule.objects.values_list("func", "schedule_type", "cluster")
    }
    assert rows["execution.sweeps.cleanup.run_scheduled_cleanup"] == ("I", "anyon")
    assert rows["secrets_app.expiry.check_token_expiry"] == ("D", None)
    assert rows["execution.sweeps.log_retention.run_scheduled_log_retention"] == (
        "H",
        None,
    )  # database only: any worker


def test_a_worker_queue_gets_its_own_cleanup_schedule():
    from django_q.models import Schedule

    from execution.sweeps.schedules import ensure_cleanup_schedule

    ensure_cleanup_schedule("host-b")
    ensure_cleanup_schedule("host-b")  # idempotent
    assert Schedule.objects.filter(func="execution.sweeps.cleanup.run_scheduled_cleanup", cluster="host-b").count() == 1


@pytest.mark.docker
def test_scheduled_cleanup_runs_through_the_django_q_scheduler(docker_client, monkeypatch, settings, tmp_path):
    """The schedule fires: django-q2's scheduler (sync mode) runs the sweep, which removes an orphan dir."""
    from django_q.brokers import get_broker
    from django_q.conf import Conf
    from django_q.models import Schedule, Success
    from django_q.scheduler import scheduler

    settings.ANYON_TEMP_DIR = tmp_path
    monkeypatch.setattr(Conf, "SYNC", True)
    Schedule.objects.exclude(func="execution.sweeps.cleanup.run_scheduled_cleanup").delete()
    Schedule.objects.update(next_run=timezone.now() - timedelta(minutes=1))
    secret_dir.secrets_root().mkdir(parents=True)
    (secret_dir.secrets_root() / "777777").mkdir()
    scheduler(broker=get_broker())
    assert not (secret_dir.secrets_root() / "777777").exists()
    results = Success.objects.filter(func="execution.sweeps.cleanup.run_scheduled_cleanup").values_list(
        "result", flat=True
    )
    assert any("secret dirs: examined 1, removed 1" in r for r in results), list(results)


def test_the_log_retention_sweep_runs_through_the_django_q_scheduler(monkeypatch, settings):
    """The hourly schedule fires: django-q2's scheduler (sync mode) removes the full log of an old attempt."""
    from django_q.brokers import get_broker
    from django_q.conf import Conf
    from django_q.models import Schedule, Success
    from django_q.scheduler import scheduler

    from execution.models import LogRecord
    from tests.execution.sweeps.test_log_retention import finished_attempt

    settings.ANYON_LOG_RETENTION_DAYS = 30
    monkeypatch.setattr(Conf, "SYNC", True)
    old, _ = finished_attempt("scheduled", days_ago=31)
    Schedule.objects.exclude(func="execution.sweeps.log_retention.run_scheduled_log_retention").delete()
    Schedule.objects.update(next_run=timezone.now() - timedelta(minutes=1))
    scheduler(broker=get_broker())
    assert not LogRecord.objects.filter(attempt=old).exists()
    old.refresh_from_db()
    assert old.log_removed_at and old.log_summary["lines"] == 76
    results = Success.objects.filter(func="execution.sweeps.log_retention.run_scheduled_log_retention")
    assert list(results.values_list("result", flat=True)) == ["old logs: examined 1, removed 1"]
