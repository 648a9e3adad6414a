"""Shared shape of the cleanup commands: progress lines, a summary with counts, exit 1 on failure."""

from __future__ import annotations

from collections.abc import Callable

from django.core.management.base import BaseCommand, CommandError

from execution.sweeps.report import SweepReport


class SweepCommand(BaseCommand):
    supports_dry_run = True

    def add_arguments(self, parser) -> None:
        if self.supports_dry_run:
            parser.add_argument("--dry-run", action="store_true", help="report what would be removed, remove nothing")

    def run_sweeps(self, sweeps: list[tuple[str, Callable[..., SweepReport]]], *, dry_run: bool = False) -> None:
        failed = False
        for index, (name, sweep) in enumerate(sweeps, 1):
            self.stdout.write(f"[{index}/{len(sweeps)}] {name}…")
            kwargs = {"dry_run": True} if dry_run else {}
            try:
                report = sweep(progress=lambda message: self.stdout.write(f"    {message}"), **kwargs)
            except Exception as exc:
                failed = True
                self.stderr.write(self.style.ERROR(f"    {name} failed: {exc}"))
                continue
            style = self.style.ERROR if report.failed else self.style.SUCCESS
            self.stdout.write(style(f"    {report.line()}"))
            failed = failed or bool(report.failed)
        if failed:
            raise CommandError("some sweeps failed; see above (alerts were raised)")
