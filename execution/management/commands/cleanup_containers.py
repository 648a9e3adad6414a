"""``manage.py cleanup_containers [--dry-run]``: remove this instance's orphan containers."""

from execution.management.sweep_command import SweepCommand
from execution.sweeps.cleanup import sweep_containers


class Command(SweepCommand):
    help = "Remove labelled containers whose attempt is finished, unknown or past anyon.expires."

    def handle(self, *args, **options) -> None:
        self.run_sweeps([("containers", sweep_containers)], dry_run=options["dry_run"])
