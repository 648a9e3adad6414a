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

    from execution.sweeps.schedules import CLEANUP, do_reconcile_schedules

    do_reconcile_schedules(queue="host-b")
    assert not do_reconcile_schedules(queue="host-b")  # nothing left to change
    assert Schedule.objects.filter(func=CLEANUP, cluster="host-b").count() == 1
    assert Schedule.objects.filter(func=CLEANUP, cluster="anyon").count() == 1  # another queue's stays


def test_reconcile_creates_updates_and_removes_only_anyons_own(settings):
    from django_q.models import Schedule

    from execution.sweeps.schedules import LOG_RETENTION, do_reconcile_schedules, registry, schedule_diff

    settings.ANYON_POOL_SIZE = 0
    Schedule.objects.filter(func=LOG_RETENTION).delete()  # missing
    Schedule.objects.filter(name="anyon: cleanup sweeps [anyon]").update(minutes=60)  # changed by hand
    Schedule.objects.create(name="anyon: warm pool refill [anyon]", func="x.y", schedule_type="I", minutes=1)
    Schedule.objects.create(name="anyon: cleanup sweeps [host-z]", func="x.y", schedule_type="I", cluster="host-z")
    mine = Schedule.objects.create(name="nightly report", func="reports.nightly", schedule_type="D")
    diff = schedule_diff("anyon")
    assert diff.missing == ["anyon: log retention sweep"]
    assert diff.changed == ["anyon: cleanup sweeps [anyon]"]
    assert diff.extra == ["anyon: warm pool refill [anyon]"]  # the pool is off

    assert do_reconcile_schedules(queue="anyon").line() == diff.line()
    assert not schedule_diff("anyon")
    rows = {row.name: row for row in Schedule.objects.all()}
    assert rows["anyon: log retention sweep"].schedule_type == "H"
    assert rows["anyon: cleanup sweeps [anyon]"].minutes == settings.ANYON_CLEANUP_MINUTES
    assert "anyon: warm pool refill [anyon]" not in rows
    assert rows["anyon: cleanup sweeps [host-z]"].func == "x.y"  # host-z's workers reconcile their own
    assert rows["nightly report"].func == mine.func and rows["nightly report"].schedule_type == "D"
    assert {spec.name for spec in registry("anyon")} <= set(rows)


def test_the_pool_schedule_follows_the_pool_size(settings):
    from django_q.models import Schedule

    from execution.sweeps.schedules import POOL_REFILL, do_reconcile_schedules

    settings.ANYON_POOL_SIZE = 2
    do_reconcile_schedules(queue="anyon")
    assert Schedule.objects.get(func=POOL_REFILL, cluster="anyon").minutes == 1
    settings.ANYON_POOL_SIZE = 0
    do_reconcile_schedules(queue="anyon")
    assert not Schedule.objects.filter(func=POOL_REFILL).exists()


def test_doctor_says_when_the_schedules_differ_from_the_registry(settings):
    from django_q.models import Schedule

    from anyon.health.schedules import check_schedules
    from execution.sweeps.schedules import do_reconcile_schedules

    do_reconcile_schedules(queue=settings.ANYON_WORKER_QUEUE)
    assert check_schedules().status == "ok"
    Schedule.objects.filter(name="anyon: token expiry check").delete()
    check = check_schedules()
    assert check.status == "warn" and "missing: anyon: token expiry check" in check.detail
    assert "restart" in check.fix


@pytest.mark.django_db(transaction=True)
def test_a_changed_interval_takes_effect_when_a_worker_starts(worker_factory):
    """A real ``qcluster`` with ``ANYON_CLEANUP_MINUTES=17`` reconciles the schedule at its start."""
    from django_q.models import Schedule

    from tests.fixtures.waiting import wait_for

    Schedule.objects.create(name="nightly report", func="reports.nightly", schedule_type="D")
    worker_factory(ANYON_CLEANUP_MINUTES="17", DOCKER_HOST="unix:///nonexistent/docker.sock")
    wait_for(
        lambda: Schedule.objects.filter(name="anyon: cleanup sweeps [anyon]", minutes=17).exists(),
        timeout=60,
        what="the cleanup schedule at 17 minutes",
    )
    assert Schedule.objects.filter(name="nightly report").exists()


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
