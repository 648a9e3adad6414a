"""The scheduled tasks' functions moved into execution's subpackages: stored schedules name them by their new path."""

from django.db import migrations

MOVED = {
    "execution.cleanup.run_scheduled_cleanup": "execution.sweeps.cleanup.run_scheduled_cleanup",
    "execution.log_retention.run_scheduled_log_retention": "execution.sweeps.log_retention.run_scheduled_log_retention",
    "execution.pool.refill_pool": "execution.hosts.pool.refill_pool",
}


def rename(apps, mapping: dict[str, str]) -> None:
    Schedule = apps.get_model("django_q", "Schedule")
    for old, new in mapping.items():
        Schedule.objects.filter(func=old).update(func=new)


def forward(apps, schema_editor):
    rename(apps, MOVED)


def backward(apps, schema_editor):
    rename(apps, {new: old for old, new in MOVED.items()})


class Migration(migrations.Migration):
    dependencies = [
        ("execution", "0017_worker_processes"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]
    operations = [migrations.RunPython(forward, backward)]
