"""Backup and restore of the database (``manage.py backup`` / ``manage.py restore``; ``deploy/anyon-ctl`` stops and
starts the services around them).

A backup is one tar stream: ``manifest.json`` first (engine, instance, time, the applied migrations and a
fingerprint of ``ANYON_SECRET_KEY``), then the database: a ``pg_dump`` custom-format archive for PostgreSQL, or a
copy made with SQLite's online backup API for the embedded default. The key itself is never in it: a dump holds
ciphertexts and session keys, the key decrypts them, so the two are kept apart (docs/DEPLOYMENT.md, "Backups").
Restore refuses what would leave a broken installation: another engine, another key, migrations this code does not
know, or a database still in use by the web server, the worker or the egress proxy.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder

from anyon.data_dir import SQLITE_SUFFIXES, sqlite_path

FORMAT = 1
MANIFEST = "manifest.json"
MEMBERS = {"postgresql": "database.pgdump", "sqlite": "database.sqlite3"}


class BackupError(Exception):
    """A backup or restore that cannot go ahead; the message says why and what to do."""


def key_fingerprint(key: str) -> str:
    """Names a key without revealing it: restore compares it with the running installation's."""
    return hashlib.sha256(b"anyon-backup-key:" + key.encode()).hexdigest()[:16]


def _engine() -> str:
    vendor = connections[DEFAULT_DB_ALIAS].vendor
    if vendor not in MEMBERS:
        raise BackupError(f"backups support PostgreSQL and SQLite, not {vendor}")
    return vendor


def _pg_env() -> dict[str, str]:
    """libpq's environment for pg_dump/pg_restore/psql: the password never goes on a command line (ps shows those)."""
    db = connections[DEFAULT_DB_ALIAS].settings_dict
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    pairs = {
        "PGHOST": db.get("HOST"),
        "PGPORT": db.get("PORT"),
        "PGUSER": db.get("USER"),
        "PGPASSWORD": db.get("PASSWORD"),
        "PGDATABASE": db.get("NAME"),
        "PGSSLMODE": (db.get("OPTIONS") or {}).get("sslmode"),
    }
    env.update({k: str(v) for k, v in pairs.items() if v})
    return env


def applied_migrations() -> list[str]:
    recorder = MigrationRecorder(connections[DEFAULT_DB_ALIAS])
    return sorted(f"{app}.{name}" for app, name in recorder.applied_migrations())


def _manifest() -> dict:
    return {
        "format": FORMAT,
        "engine": _engine(),
        "instance": settings.ANYON_INSTANCE,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "key_fingerprint": key_fingerprint(settings.SECRET_KEY),
        "migrations": applied_migrations(),
    }


def _dump_database(engine: str, target: Path) -> None:
    if engine == "postgresql":
        done = subprocess.run(
            ["pg_dump", "--format=custom", "--no-owner", "--no-privileges", "--file", str(target)],
            env=_pg_env(),
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise BackupError(f"pg_dump failed: {done.stderr.strip()}")
        return
    source = sqlite3.connect(str(sqlite_path(connections[DEFAULT_DB_ALIAS].settings_dict)))
    copy = sqlite3.connect(str(target))
    try:
        source.backup(copy)  # a consistent copy while web and worker keep writing (WAL included)
    finally:
        copy.close()
        source.close()


def write_backup(out: IO[bytes]) -> dict:
    """Write the backup tar stream to ``out``; returns its manifest."""
    manifest = _manifest()
    with tempfile.TemporaryDirectory(prefix="anyon-backup-") as work:
        dump = Path(work) / MEMBERS[manifest["engine"]]
        _dump_database(manifest["engine"], dump)
        with tarfile.open(fileobj=out, mode="w|") as tar:
            data = json.dumps(manifest, indent=2).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mtime, info.mode = len(data), int(time.time()), 0o600
            tar.addfile(info, io.BytesIO(data))
            tar.add(dump, arcname=dump.name)
    return manifest


@dataclass
class Restored:
    manifest: dict
    engine: str


def other_users_of_database() -> list[str]:
    """Who else holds the database open: PostgreSQL sessions, or processes with the SQLite file open."""
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid, coalesce(nullif(application_name, ''), '?'), coalesce(client_addr::text, 'local') "
                "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            return [f"session {pid} ({app}, from {addr})" for pid, app, addr in cursor.fetchall()]
    path = sqlite_path(connection.settings_dict)
    if path is None:
        return []
    return [f"process {pid}" for pid in _processes_holding({Path(f"{path}{s}") for s in SQLITE_SUFFIXES})]


def _processes_holding(files: set[Path]) -> list[int]:
    wanted = {str(f) for f in files}
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        if int(proc.name) == os.getpid():
            continue
        try:
            links = {os.readlink(fd) for fd in (proc / "fd").iterdir()}
        except OSError:
            continue  # gone, or another user's (the services run as this user, so theirs are readable)
        if links & wanted:
            found.append(int(proc.name))
    return found


def _read_backup(source: IO[bytes], work: Path) -> tuple[dict, Path]:
    manifest, dump = None, None
    try:
        with tarfile.open(fileobj=source, mode="r|") as tar:
            for member in tar:
                if member.name == MANIFEST and member.isfile():
                    manifest = json.loads(tar.extractfile(member).read())
                elif member.name in MEMBERS.values() and member.isfile():
                    dump = work / member.name
                    with dump.open("wb") as handle:
                        handle.write(tar.extractfile(member).read())
    except (tarfile.TarError, json.JSONDecodeError) as exc:
        raise BackupError(f"not a backup of manage.py backup: {exc}") from exc
    if manifest is None or dump is None or manifest.get("format") != FORMAT:
        raise BackupError("not a backup of manage.py backup (no manifest or no database in it)")
    return manifest, dump


def check_restorable(manifest: dict, *, allow_other_key: bool) -> None:
    engine = _engine()
    if manifest["engine"] != engine:
        raise BackupError(f"the backup is of a {manifest['engine']} database; this installation uses {engine}")
    here = key_fingerprint(settings.SECRET_KEY)
    if manifest["key_fingerprint"] != here and not allow_other_key:
        raise BackupError(
            f"the backup was made with another ANYON_SECRET_KEY (fingerprint {manifest['key_fingerprint']}; this "
            f"installation's is {here}): its stored credentials and sessions would be unreadable. Put the key of "
            "the backup into the settings file first (the copy of the settings file you keep apart from the "
            "backups), or pass --allow-other-key to restore anyway: every user then connects GitHub and Claude again"
        )
    known = {f"{app}.{name}" for app, name in MigrationLoader(None, ignore_no_migrations=True).disk_migrations}
    unknown = sorted(set(manifest["migrations"]) - known)
    if unknown:
        raise BackupError(
            f"the backup was made by a newer version (migrations this code does not have: {', '.join(unknown[:5])}"
            f"{' …' if len(unknown) > 5 else ''}): install that version first"
        )
    others = other_users_of_database()
    if others:
        raise BackupError(
            f"the database is in use by {len(others)} other connection(s): {'; '.join(others[:10])}. Stop the web "
            "server, the worker and the egress proxy first (deploy/anyon-ctl restore does)"
        )


def _restore_postgresql(dump: Path) -> None:
    """Replace every object of the database's owner with the dump's, in one transaction: all or nothing."""
    env = _pg_env()
    restore = subprocess.Popen(
        ["pg_restore", "--no-owner", "--no-privileges", "--file", "-", str(dump)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    psql = subprocess.run(
        ["psql", "--no-psqlrc", "--quiet", "--single-transaction", "-v", "ON_ERROR_STOP=1",
         "-c", "DROP OWNED BY CURRENT_USER", "-c", "CREATE SCHEMA IF NOT EXISTS public", "-f", "-"],
        env=env,
        stdin=restore.stdout,
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    restore.stdout.close()
    restore_err = restore.stderr.read().decode(errors="replace")
    if restore.wait() != 0:
        raise BackupError(f"pg_restore failed (nothing was changed): {restore_err.strip()}")
    if psql.returncode != 0:
        raise BackupError(f"psql failed (nothing was changed): {psql.stderr.strip()}")


def _restore_sqlite(dump: Path) -> None:
    path = sqlite_path(connections[DEFAULT_DB_ALIAS].settings_dict)
    source = sqlite3.connect(str(dump))
    target = sqlite3.connect(str(path))
    try:
        source.backup(target)  # replaces every page of the live file, its WAL included
    finally:
        target.close()
        source.close()
    for suffix in SQLITE_SUFFIXES:
        file = Path(f"{path}{suffix}")
        if file.exists():
            os.chmod(file, 0o600)


def restore_backup(source: IO[bytes], *, allow_other_key: bool = False) -> Restored:
    with tempfile.TemporaryDirectory(prefix="anyon-restore-") as work:
        manifest, dump = _read_backup(source, Path(work))
        check_restorable(manifest, allow_other_key=allow_other_key)
        engine = manifest["engine"]
        connections.close_all()
        if engine == "postgresql":
            _restore_postgresql(dump)
        else:
            _restore_sqlite(dump)
    if settings.REDIS_URL:
        # Queued tasks, cached heartbeats and channel messages belonged to the database that was just replaced.
        import redis

        redis.Redis.from_url(settings.REDIS_URL).flushdb()
    return Restored(manifest=manifest, engine=engine)


def describe(manifest: dict) -> Iterable[str]:
    yield f"engine {manifest['engine']}, instance {manifest['instance']}, made {manifest['created']}"
    yield f"{len(manifest['migrations'])} migrations applied, key fingerprint {manifest['key_fingerprint']}"
