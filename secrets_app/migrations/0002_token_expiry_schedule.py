"""The daily token expiry check, created here so every installation has it (visible in the admin)."""

from django.db import migrations

NAME = "anyon: token expiry check"


def create(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.update_or_create(
        name=NAME,
        defaults={
            "func": "secrets_app.expiry.check_token_expiry",
            "schedule_type": "D",
            "repeats": -1,
            "cluster": None,
        },
    )


def remove(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("secrets_app", "0001_initial"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]
    operations = [migrations.RunPython(create, remove)]
