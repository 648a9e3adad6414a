"""The scheduled maintenance tasks, created here so every installation has them (visible in the admin)."""

from django.conf import settings
from django.db import migrations

# The token expiry check is secrets_app's own (its migration 0002).
# (name, function, django-q2 schedule type: "I" every N minutes, "D" daily, queue). The cleanup schedule of the
# default queue is created here; a worker of another queue (Docker host) creates its own when it starts.
SCHEDULES = [
    ("anyon: cleanup sweeps [anyon]", "execution.cleanup.run_scheduled_cleanup", "I", "anyon"),
]


def create(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    for name, func, kind, queue in SCHEDULES:
        fields = {"func": func, "schedule_type": kind, "repeats": -1, "cluster": queue}
        if kind == "I":
            fields["minutes"] = settings.ANYON_CLEANUP_MINUTES
        Schedule.objects.update_or_create(name=name, defaults=fields)


def remove(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name__in=[s[0] for s in SCHEDULES]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("execution", "0003_results"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]
    operations = [migrations.RunPython(create, remove)]
