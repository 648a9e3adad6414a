"""``manage.py drop_old_logs``: the log retention sweep now, with progress (the hourly schedule runs it too)."""

import functools

from execution.management.sweep_command import SweepCommand
from execution.sweeps.log_retention import sweep_old_logs


class Command(SweepCommand):
    help = (
        "Remove the full logs of attempts that finished more than ANYON_LOG_RETENTION_DAYS days ago, keeping a "
        "summary (line counts, bytes, the last lines of each step)."
    )

    def add_arguments(self, parser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--days", type=int, help="this retention instead of ANYON_LOG_RETENTION_DAYS")
        parser.add_argument("--limit", type=int, help="at most this many attempts")

    def handle(self, *args, **options) -> None:
        sweep = functools.partial(sweep_old_logs, days=options["days"], limit=options["limit"])
        self.run_sweeps([("old logs", sweep)], dry_run=options["dry_run"])
