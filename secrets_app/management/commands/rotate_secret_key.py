"""``manage.py rotate_secret_key``: move every stored secret from the old key to the current ANYON_SECRET_KEY."""

from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from secrets_app.key_rotation import rotate_secret_key


class Command(BaseCommand):
    help = (
        "Re-encrypt all secrets from the old key (ANYON_OLD_SECRET_KEY or --old-key-file) to the current "
        "ANYON_SECRET_KEY, in one transaction. Unreadable rows are reported by id and left untouched."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--old-key-file", type=Path, help="file holding the old key (instead of the env var)")
        parser.add_argument("--dry-run", action="store_true", help="count what would change, change nothing")

    def handle(self, *args, **options) -> None:
        # The old key is never taken as a command-line argument: that would show it in `ps` and shell history.
        if options["old_key_file"]:
            old_key = options["old_key_file"].read_text().strip()
        else:
            old_key = os.environ.get("ANYON_OLD_SECRET_KEY", "").strip()
        if not old_key:
            raise CommandError("Give the old key in ANYON_OLD_SECRET_KEY or --old-key-file (see docs/RUNBOOK.md).")
        if old_key == settings.SECRET_KEY:
            raise CommandError("The old key equals the current ANYON_SECRET_KEY: set ANYON_SECRET_KEY to the new key.")
        report = rotate_secret_key(old_key=old_key, dry_run=options["dry_run"])
        verb = "would re-encrypt" if options["dry_run"] else "re-encrypted"
        self.stdout.write(f"{verb} {report.rotated} value(s); {report.already_current} already on the new key.")
        for label in report.unreadable:
            self.stderr.write(self.style.ERROR(f"unreadable with either key, left untouched: {label}"))
        if report.unreadable:
            raise CommandError(f"{len(report.unreadable)} value(s) could not be decrypted; see above.")
        self.stdout.write(self.style.SUCCESS("Done. Restart the web server and the worker."))
