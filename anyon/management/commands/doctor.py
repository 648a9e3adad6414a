"""``manage.py doctor``: is this installation able to run attempts? One line a check, with the fix."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from anyon.health import DOCTOR_CHECKS, FAIL, OK, run_checks

SYMBOLS = {OK: "✓", "warn": "!", FAIL: "✗"}


class Command(BaseCommand):
    help = "Check the Docker engine, runtime image, temp dir, secret key, worker and database; exit 1 on failure."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--json", action="store_true", help="print the checks as JSON")

    def handle(self, *args, **options) -> None:
        checks = run_checks(DOCTOR_CHECKS)
        if options["json"]:
            self.stdout.write(json.dumps([c.as_dict() for c in checks], indent=2))
        else:
            width = max(len(c.name) for c in checks)
            for check in checks:
                line = f"{SYMBOLS[check.status]} {check.name:<{width}}  {check.detail}"
                style = {OK: self.style.SUCCESS, FAIL: self.style.ERROR}.get(check.status, self.style.WARNING)
                self.stdout.write(style(line))
                if check.status != OK and check.fix:
                    self.stdout.write(f"  {'':<{width}}  fix: {check.fix}")
        failed = [c.name for c in checks if c.required and c.failed]
        if failed:
            raise CommandError(f"{len(failed)} required check(s) failed: {', '.join(failed)}")
        if not options["json"]:
            self.stdout.write(self.style.SUCCESS("All required checks passed."))
