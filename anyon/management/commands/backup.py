"""``manage.py backup``: the database as one tar stream (anyon/backups.py); ``deploy/anyon-ctl backup`` stores it."""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError

from anyon.backups import BackupError, describe, write_backup


class Command(BaseCommand):
    help = "Write a backup of the database (pg_dump custom format, or SQLite's backup API) with its manifest."

    def add_arguments(self, parser) -> None:
        parser.add_argument("output", help="the backup file to write, or - for standard output")

    def handle(self, *args, **options) -> None:
        target = options["output"]
        try:
            if target == "-":
                manifest = write_backup(sys.stdout.buffer)
                sys.stdout.buffer.flush()
            else:
                with open(target, "xb") as out:  # never overwrites an older backup
                    manifest = write_backup(out)
        except (BackupError, FileExistsError) as exc:
            raise CommandError(str(exc)) from exc
        for line in describe(manifest):
            self.stderr.write(f"backup: {line}")
        self.stderr.write("backup: the key is not in it: keep the settings file (ANYON_SECRET_KEY) apart")
