"""``manage.py cleanup_secrets [--dry-run]``: remove orphan per-attempt secret dirs."""

from execution.management.sweep_command import SweepCommand
from execution.sweeps.cleanup import sweep_secret_dirs


class Command(SweepCommand):
    help = "Remove secret dirs whose attempt is not running or that are older than ANYON_SECRET_DIR_MAX_AGE."

    def handle(self, *args, **options) -> None:
        self.run_sweeps([("secret-dirs", sweep_secret_dirs)], dry_run=options["dry_run"])
