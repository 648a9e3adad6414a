"""Log retention: what an attempt keeps once its full log is removed, and the hourly sweep that removes it."""

from django.db import migrations, models

SCHEDULE = "anyon: log retention sweep"


def create_schedule(apps, schema_editor):
    # Database work only (no Docker host): any worker cluster may run it (cluster None), like the token check.
    apps.get_model("django_q", "Schedule").objects.update_or_create(
        name=SCHEDULE,
        defaults={
            "func": "execution.log_retention.run_scheduled_log_retention",
            "schedule_type": "H",
            "repeats": -1,
            "cluster": None,
        },
    )


def remove_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=SCHEDULE).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("execution", "0012_limits"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [
        migrations.AddField(
            model_name="attempt",
            name="log_removed_at",
            field=models.DateTimeField(
                blank=True,
                help_text="when the full log was removed (ANYON_LOG_RETENTION_DAYS); a summary stays",
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="attempt",
            name="log_summary",
            field=models.JSONField(
                blank=True,
                default=dict,
                help_text="what the removed log held: line counts, bytes, the last lines of each step",
            ),
        ),
        migrations.RunPython(create_schedule, remove_schedule),
    ]
