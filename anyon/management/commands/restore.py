"""``manage.py restore``: replace the database with a backup of ``manage.py backup``, after checking it fits."""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError

from anyon.backups import BackupError, describe, restore_backup


class Command(BaseCommand):
    help = (
        "Replace the database with a backup (refused when it is another engine, another key, newer migrations, "
        "or the database is still in use). Run manage.py migrate afterwards."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("input", help="the backup file, or - for standard input")
        parser.add_argument(
            "--allow-other-key",
            action="store_true",
            help="restore a backup made with another ANYON_SECRET_KEY (its credentials and sessions are lost)",
        )

    def handle(self, *args, **options) -> None:
        try:
            if options["input"] == "-":
                restored = restore_backup(sys.stdin.buffer, allow_other_key=options["allow_other_key"])
            else:
                with open(options["input"], "rb") as source:
                    restored = restore_backup(source, allow_other_key=options["allow_other_key"])
        except (BackupError, OSError) as exc:
            raise CommandError(str(exc)) from exc
        for line in describe(restored.manifest):
            self.stdout.write(f"restored: {line}")
