"""``manage.py rotate_secret_key``: move the secret store to a new ANYON_SECRET_KEY, with the services' own settings.

``manage.py`` first re-executes this command with the services' settings file (``ANYON_ENV_FILE``,
``/etc/anyon/env``; anyon/services_env.py), so it opens the database the services use, never a stray SQLite file,
and the current key is theirs. The new key comes from a file, stdin or ``--generate``, never from the command line
(``ps`` and the shell history would show it). The store is re-encrypted in one transaction and the settings file
gets the new key before that transaction commits (and gets the old one back if the commit fails), so the database
and the file never disagree.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.utils import timezone

from anyon.devkey import MIN_KEY_LENGTH
from anyon.services_env import LOADED
from secrets_app.key_canary import do_ensure_canary, store_problem
from secrets_app.key_rotation import do_rotate_secret_key, use_secret_key
from shared.env_file import read_env_file, set_in_env_file


def describe_database() -> str:
    db = connections[DEFAULT_DB_ALIAS].settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"SQLite file {db['NAME']}"
    where = f"{db.get('HOST') or 'localhost'}:{db.get('PORT') or 'default port'}"
    return f"{connections[DEFAULT_DB_ALIAS].vendor} database {db['NAME']!r} on {where} as {db.get('USER') or '?'}"


def give_back_sqlite_files() -> None:
    """Run as root (to write the settings file), this process may have made SQLite's -wal and -shm files: they go
    back to the database file's owner, or the services could no longer write their database."""
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.vendor != "sqlite" or os.geteuid() != 0:
        return
    database = Path(connection.settings_dict["NAME"])
    if not database.exists():
        return
    owner = database.stat()
    for suffix in ("-wal", "-shm", "-journal"):
        path = Path(f"{database}{suffix}")
        if path.exists() and (path.stat().st_uid, path.stat().st_gid) != (owner.st_uid, owner.st_gid):
            os.chown(path, owner.st_uid, owner.st_gid)
            path.chmod(0o600)


class Command(BaseCommand):
    help = (
        "Re-encrypt the secret store under a new key and write it into the services' settings file, using the "
        "services' own settings (ANYON_ENV_FILE, /etc/anyon/env). The new key: --new-key-file FILE, --new-key-file - "
        "(stdin), ANYON_NEW_SECRET_KEY, or --generate. Stop the web server and the worker first (docs/RUNBOOK.md)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--env-file", type=Path, help="the services' settings file (default: ANYON_ENV_FILE)")
        parser.add_argument("--no-env-file", action="store_true", help="use this process's environment only")
        parser.add_argument("--new-key-file", help="file holding the new key; - reads it from stdin")
        parser.add_argument("--generate", action="store_true", help="generate the new key (it goes into the file)")
        parser.add_argument("--old-key-file", type=Path, help="finish a rotation: the file already has the new key")
        parser.add_argument("--allow-sqlite", action="store_true", help="the services really use this SQLite file")
        parser.add_argument("--dry-run", action="store_true", help="count what would change, change nothing")

    def handle(self, *args, **options) -> None:
        try:
            self._rotate(options)
        finally:
            give_back_sqlite_files()

    def _rotate(self, options) -> None:
        env_file = self._env_file(options)
        self.stdout.write(f"settings: {env_file or 'this process environment (no settings file)'}")
        self.stdout.write(f"database: {describe_database()}")
        self._refuse_wrong_database(env_file, options)
        old_key, new_key, finishing = self._keys(options, env_file)
        self._refuse_while_workers_run(options["dry_run"])
        do_ensure_canary()
        if not finishing and store_problem():
            raise CommandError(
                "The current ANYON_SECRET_KEY does not decrypt this store (its key canary): these are not the settings "
                "the store was written with, or it was rotated already. Nothing was changed."
            )
        before = env_file.read_text() if env_file and not finishing else None
        try:
            with transaction.atomic():
                report = do_rotate_secret_key(old_key=old_key, new_key=new_key, dry_run=options["dry_run"])
                if before is not None and not options["dry_run"]:
                    set_in_env_file(env_file, "ANYON_SECRET_KEY", new_key)  # before the commit: both or neither
        except Exception:
            if before is not None and env_file.read_text() != before:
                env_file.write_text(before)
            raise
        verb = "would re-encrypt" if options["dry_run"] else "re-encrypted"
        self.stdout.write(f"{verb} {report.rotated} value(s); {report.already_current} already on the new key.")
        for label in report.unreadable:
            self.stderr.write(self.style.ERROR(f"unreadable with either key, left untouched: {label}"))
        if not options["dry_run"]:
            use_secret_key(new_key)
            problem = store_problem()
            if problem:
                raise CommandError(f"After the rotation: {problem}")
            if before is not None:
                self.stdout.write(f"{env_file}: ANYON_SECRET_KEY is the new key (back the file up with the database).")
        if report.unreadable:
            raise CommandError(f"{len(report.unreadable)} value(s) could not be decrypted; see above.")
        if options["dry_run"]:
            return
        self.stdout.write(
            self.style.SUCCESS(
                "Done. Start the web server and the worker (systemctl start anyon-web anyon-worker); the egress "
                "proxy takes the new key from the settings file at its next decrypt (or restart it, or send SIGHUP)."
            )
        )

    def _env_file(self, options) -> Path | None:
        """The settings file manage.py loaded (or that was named); a named one that was not loaded is refused."""
        if options["no_env_file"]:
            return None
        loaded = os.environ.get(LOADED, "")
        named = options["env_file"]
        if named is not None and str(named) != loaded:
            raise CommandError(f"{named} was not loaded: run this through manage.py, which loads it first.")
        return Path(loaded) if loaded else None

    def _refuse_wrong_database(self, env_file: Path | None, options) -> None:
        """Never a database the services do not use: with no settings file loaded, a settings file that names
        another database, or the embedded SQLite default outside DEBUG, is refused."""
        if env_file is None:
            configured = Path(os.environ.get("ANYON_ENV_FILE") or "/etc/anyon/env")
            try:
                theirs = read_env_file(configured).get("DATABASE_URL", "")
            except OSError:
                theirs = ""
            if theirs and theirs != os.environ.get("DATABASE_URL", ""):
                raise CommandError(
                    f"The services' settings file {configured} names another database (DATABASE_URL) than this "
                    "process: run without --no-env-file (manage.py then loads it), or with its settings."
                )
        sqlite = connections[DEFAULT_DB_ALIAS].vendor == "sqlite"
        explicit = env_file is not None or "DATABASE_URL" in os.environ or options["allow_sqlite"] or settings.DEBUG
        if sqlite and not explicit:
            raise CommandError(
                f"No settings file ({os.environ.get('ANYON_ENV_FILE') or '/etc/anyon/env'}) and no DATABASE_URL: "
                "this would touch the embedded default SQLite file, which the services may not use. Name their "
                "settings with --env-file FILE, or, if they really use this file, add --allow-sqlite."
            )
        if sqlite:
            name = Path(connections[DEFAULT_DB_ALIAS].settings_dict["NAME"])
            tables = connections[DEFAULT_DB_ALIAS].introspection.table_names() if name.exists() else []
            if "secrets_app_secret" not in tables:
                raise CommandError(f"{name} is not an Anyon database (no secret store in it). Nothing was changed.")

    def _keys(self, options, env_file: Path | None) -> tuple[str, str, bool]:
        """(old, new, finishing). Rotating: the current key is the old one, the new one is given. Finishing (the
        settings already hold the new key): the old one is given."""
        old_given = options["old_key_file"] or os.environ.get("ANYON_OLD_SECRET_KEY", "").strip()
        new_given = options["new_key_file"] or options["generate"] or os.environ.get("ANYON_NEW_SECRET_KEY", "")
        if old_given and new_given:
            raise CommandError("Give either the new key (rotate) or the old key (finish a rotation), not both.")
        if old_given:
            old = options["old_key_file"].read_text().strip() if options["old_key_file"] else old_given
            if old == settings.SECRET_KEY:
                raise CommandError(
                    "The old key equals the current ANYON_SECRET_KEY: the settings must hold the new one."
                )
            return old, settings.SECRET_KEY, True
        if not new_given:
            raise CommandError(
                "Give the new key with --new-key-file FILE, --new-key-file - (stdin), ANYON_NEW_SECRET_KEY or "
                "--generate; or, to finish a rotation whose new key is already set, the old one in "
                "ANYON_OLD_SECRET_KEY or --old-key-file (docs/RUNBOOK.md)."
            )
        if env_file is None:
            raise CommandError(
                "There is no settings file to write the new key into (ANYON_ENV_FILE, /etc/anyon/env). Set the new key "
                "as ANYON_SECRET_KEY wherever the services get it, then finish with the old key in "
                "ANYON_OLD_SECRET_KEY (docs/RUNBOOK.md)."
            )
        if options["generate"]:
            new = secrets.token_urlsafe(48)
        elif options["new_key_file"] == "-":
            new = sys.stdin.readline().strip()
        elif options["new_key_file"]:
            new = Path(options["new_key_file"]).read_text().strip()
        else:
            new = os.environ["ANYON_NEW_SECRET_KEY"].strip()
        if len(new) < MIN_KEY_LENGTH:
            raise CommandError(f"The new key is too short ({len(new)} characters; at least {MIN_KEY_LENGTH}).")
        if new == settings.SECRET_KEY:
            raise CommandError("The new key equals the current ANYON_SECRET_KEY.")
        if not options["dry_run"] and not os.access(env_file, os.W_OK):
            raise CommandError(
                f"Cannot write {env_file} (the new key goes there): run this as root (sudo). Nothing was changed."
            )
        return settings.SECRET_KEY, new, False

    def _refuse_while_workers_run(self, dry_run: bool) -> None:
        """Workers decrypting with the old key while the store moves would fail their runs."""
        from datetime import timedelta

        from execution.models import WorkerProcess

        recent = timezone.now() - timedelta(seconds=max(settings.ANYON_WORKER_LOST_SECONDS, 5))
        running = list(WorkerProcess.objects.filter(heartbeat_at__gte=recent).values_list("name", flat=True)[:5])
        if running and not dry_run:
            raise CommandError(
                f"Worker processes are running ({', '.join(running)}): stop the web server and the workers first "
                "(systemctl stop anyon-web anyon-worker). Nothing was changed."
            )
