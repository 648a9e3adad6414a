"""``manage.py backup`` / ``manage.py restore`` on the embedded default (SQLite), as separate processes: what is
restored is what was backed up, and a restore that would break the installation is refused before it changes
anything. (PostgreSQL, the services stopped and started around it: tests/deploy/test_install.py.)"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile

import pytest

from tests.fixtures.processes import ROOT

USERS = "from django.contrib.auth.models import User; print(sorted(User.objects.values_list('username', flat=True)))"


@pytest.fixture
def installation(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_ALLOW_ASYNC_UNSAFE", "DATABASE_URL", "REDIS_URL")}
    env.update(
        DJANGO_SETTINGS_MODULE="anyon.settings",
        ANYON_DATA_DIR=str(tmp_path / "data"),
        ANYON_TEMP_DIR=str(tmp_path / "tmp"),
        ANYON_SECRET_KEY="backup-test-key-" + "b" * 40,
        DEBUG="false",
        ANYON_LOG_LEVEL="WARNING",
    )

    def manage(*argv: str, stdin: bytes | None = None, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *argv], cwd=ROOT, env={**env, **extra}, input=stdin,
            capture_output=True, timeout=120, check=False,
        )  # fmt: skip

    assert manage("migrate", "--noinput").returncode == 0
    assert manage("shell", "-c", "from django.contrib.auth.models import User; User.objects.create_user('before')")
    return manage


def users(manage) -> str:
    return manage("shell", "-c", USERS).stdout.decode().strip().splitlines()[-1]


def test_a_backup_restores_what_it_held_and_is_one_private_file(installation, tmp_path):
    backup = tmp_path / "anyon.tar"
    made = installation("backup", str(backup))
    assert made.returncode == 0, made.stderr
    assert oct(backup.stat().st_mode & 0o777) in ("0o600", "0o644")  # anyon-ctl writes it with umask 077
    with tarfile.open(backup) as tar:
        assert tar.getnames() == ["manifest.json", "database.sqlite3"]
        manifest = json.loads(tar.extractfile("manifest.json").read())
    assert manifest["engine"] == "sqlite" and "backup-test-key" not in json.dumps(manifest)
    assert "execution.0001_initial" in manifest["migrations"]
    assert b"backup-test-key" not in backup.read_bytes()  # the key is kept apart from the backups
    installation("shell", "-c", "from django.contrib.auth.models import User; User.objects.create_user('after')")
    assert users(installation) == "['after', 'before']"
    restored = installation("restore", "-", stdin=backup.read_bytes())
    assert restored.returncode == 0, restored.stderr
    assert users(installation) == "['before']"
    assert installation("backup", str(backup)).returncode == 1  # never overwrites an older backup


def test_a_restore_that_would_break_the_installation_is_refused_and_changes_nothing(installation, tmp_path):
    backup = tmp_path / "anyon.tar"
    assert installation("backup", str(backup)).returncode == 0
    installation("shell", "-c", "from django.contrib.auth.models import User; User.objects.create_user('kept')")

    other_key = installation("restore", str(backup), ANYON_SECRET_KEY="another-key-" + "o" * 40)
    assert other_key.returncode == 1
    assert b"made with another ANYON_SECRET_KEY" in other_key.stderr

    newer = tmp_path / "newer.tar"
    with tarfile.open(backup) as source, tarfile.open(newer, "w") as target:
        manifest = json.loads(source.extractfile("manifest.json").read())
        manifest["migrations"].append("execution.9999_from_a_later_version")
        data = json.dumps(manifest).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        target.addfile(info, io.BytesIO(data))
        member = source.getmember("database.sqlite3")
        target.addfile(member, source.extractfile(member))
    refused = installation("restore", str(newer))
    assert refused.returncode == 1 and b"made by a newer version" in refused.stderr

    # A web server or worker still running holds the database file open.
    database = tmp_path / "data" / "anyon.sqlite3"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import sqlite3,sys; c=sqlite3.connect({str(database)!r}); c.execute('select 1');"
         "print('open', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "open"
        in_use = installation("restore", str(backup))
        assert in_use.returncode == 1
        assert f"process {holder.pid}".encode() in in_use.stderr and b"Stop the web server" in in_use.stderr
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)

    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"not a tar at all" * 100)
    assert b"not a backup" in installation("restore", str(garbage)).stderr
    assert users(installation) == "['before', 'kept']"  # none of them changed anything
