"""``manage.py cleanup``: run the cleanup sweeps now, printing every action (the schedule runs them too)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from execution.cleanup import SWEEPS


class Command(BaseCommand):
    help = "Remove orphan secret dirs and containers, idle workspaces, and end stale attempts."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--only", choices=sorted(SWEEPS), action="append", help="run only these sweeps")

    def handle(self, *args, **options) -> None:
        names = options["only"] or list(SWEEPS)
        failed = False
        for index, name in enumerate(names, 1):
            self.stdout.write(f"[{index}/{len(names)}] {name}…")
            try:
                report = SWEEPS[name](progress=lambda message: self.stdout.write(f"    {message}"))
            except Exception as exc:
                failed = True
                self.stderr.write(self.style.ERROR(f"    {name} failed: {exc}"))
                continue
            style = self.style.ERROR if report.failed else self.style.SUCCESS
            self.stdout.write(style(f"    {report.line()}"))
            failed = failed or bool(report.failed)
        if failed:
            raise CommandError("some sweeps failed; see above (alerts were raised)")
