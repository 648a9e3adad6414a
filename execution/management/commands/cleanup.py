"""``manage.py cleanup``: every cleanup sweep now, with progress (the schedule runs them too)."""

from execution.management.sweep_command import SweepCommand
from execution.sweeps.cleanup import SWEEPS


class Command(SweepCommand):
    help = "Remove orphan secret dirs and containers, idle workspaces, and end stale attempts."
    supports_dry_run = False

    def add_arguments(self, parser) -> None:
        parser.add_argument("--only", choices=sorted(SWEEPS), action="append", help="run only these sweeps")

    def handle(self, *args, **options) -> None:
        self.run_sweeps([(name, SWEEPS[name]) for name in options["only"] or SWEEPS])
