"""Alerts moved to the ``shared`` app (below both apps): copy the rows, then drop the old table."""

from django.core.management.color import no_style
from django.db import migrations

FIELDS = (
    "id", "kind", "severity", "message", "user_id", "count", "first_seen", "last_seen", "acknowledged_by_id",
    "acknowledged_at", "delivery",
)  # fmt: skip


def copy_forward(apps, schema_editor):
    Old, New = apps.get_model("execution", "Alert"), apps.get_model("shared", "Alert")
    New.objects.bulk_create(
        New(attempt_id=row["attempt_id"], dedupe_key=row["fingerprint"], **{f: row[f] for f in FIELDS})
        for row in Old.objects.values(*FIELDS, "attempt_id", "fingerprint").iterator()
    )
    with schema_editor.connection.cursor() as cursor:  # ids were copied: move PostgreSQL's sequence past them
        for sql in schema_editor.connection.ops.sequence_reset_sql(no_style(), [New]):
            cursor.execute(sql)


def copy_back(apps, schema_editor):
    Old, New, Attempt = (
        apps.get_model(*m) for m in (("execution", "Alert"), ("shared", "Alert"), ("execution", "Attempt"))
    )
    existing = set(Attempt.objects.values_list("pk", flat=True))
    Old.objects.bulk_create(
        Old(
            attempt_id=row["attempt_id"] if row["attempt_id"] in existing else None,
            fingerprint=row["dedupe_key"],
            **{f: row[f] for f in FIELDS},
        )
        for row in New.objects.values(*FIELDS, "attempt_id", "dedupe_key").iterator()
    )


class Migration(migrations.Migration):
    dependencies = [("execution", "0008_prompts_keep_nul"), ("shared", "0001_initial")]

    operations = [
        migrations.RunPython(copy_forward, copy_back),
        migrations.DeleteModel(name="Alert"),
    ]
