"""The pool's refill task moved into its own module: stored schedules name it by its new path (workers also
reconcile their schedules with the registry when they start; this covers the time until then)."""

from django.db import migrations

OLD, NEW = "execution.hosts.pool.refill_pool", "execution.hosts.pool.refill.refill_pool"


def forward(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(func=OLD).update(func=NEW)


def backward(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(func=NEW).update(func=OLD)


class Migration(migrations.Migration):
    dependencies = [("execution", "0019_push_summary_and_tool_outputs")]
    operations = [migrations.RunPython(forward, backward)]
