"""Migration 0018: schedules stored with a function's old module path run the function at its new path."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils.module_loading import import_string

BEFORE = [
    ("execution", "0017_worker_processes"),
    ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
]
OLD = [
    "execution.cleanup.run_scheduled_cleanup",
    "execution.log_retention.run_scheduled_log_retention",
    "execution.pool.refill_pool",
]


@pytest.mark.django_db(transaction=True)
def test_stored_schedules_name_importable_functions_after_the_move():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    Schedule = executor.loader.project_state(BEFORE).apps.get_model("django_q", "Schedule")
    Schedule.objects.all().delete()
    for n, func in enumerate(OLD):
        Schedule.objects.create(name=f"old {n}", func=func, schedule_type="H", repeats=-1)
    Schedule.objects.create(name="other", func="secrets_app.expiry.check_token_expiry", schedule_type="D")
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    from django_q.models import Schedule

    funcs = dict(Schedule.objects.values_list("name", "func"))
    assert funcs["other"] == "secrets_app.expiry.check_token_expiry"
    for n in range(len(OLD)):
        assert callable(import_string(funcs[f"old {n}"])), funcs[f"old {n}"]
    assert not set(OLD) & set(funcs.values())


@pytest.mark.django_db(transaction=True)
def test_going_back_restores_the_old_paths():
    from django_q.models import Schedule

    Schedule.objects.create(name="moved", func="execution.hosts.pool.refill_pool", schedule_type="H")
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    assert Schedule.objects.get(name="moved").func == "execution.pool.refill_pool"
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
