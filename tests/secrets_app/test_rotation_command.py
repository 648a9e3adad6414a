"""``manage.py rotate_secret_key`` as an operator runs it: a real process, with the services' settings file
(``ANYON_ENV_FILE``) and nothing else, the new key on stdin. It touches the database the services use and no other,
writes the new key into the file, and a store left on another key is a doctor ✗ and an alert."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from anyon.health import FAIL, OK, check_secret_store
from execution.models import WorkerProcess
from secrets_app.key_rotation import use_secret_key
from secrets_app.models import Secret
from secrets_app.secret_store import do_store_secret, fetch_secret
from shared.alerts import AlertKind
from shared.env_file import read_env_file
from shared.models import Alert
from tests.fakes.github import classic_token
from tests.fixtures import processes
from tests.fixtures.processes import ROOT, subprocess_env

NEW_KEY = "rotated-by-the-command-" + "r" * 40
OTHER_KEY = "a-key-the-store-never-saw-" + "o" * 40


@pytest.fixture(autouse=True)
def this_process_keeps_its_key(transactional_db):
    """Back to the suite's key before the database is emptied: the emptying writes a new key canary."""
    yield
    use_secret_key(os.environ["ANYON_SECRET_KEY"])


def bare_env(**extra: str) -> dict[str, str]:
    """What an operator's root shell holds: none of the services' settings (no DATABASE_URL, no key)."""
    env = subprocess_env()
    for name in ("DATABASE_URL", "ANYON_SECRET_KEY", "ANYON_TEMP_DIR", "ANYON_DATA_DIR"):
        env.pop(name, None)
    env.update(extra)
    return env


def services_file(tmp_path: Path, **values: str) -> Path:
    path = tmp_path / "env"
    lines = ["# the services' settings (systemd EnvironmentFile=)", *(f"{k}={v}" for k, v in values.items())]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o640)
    return path


def rotate(*args: str, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "rotate_secret_key", *args],
        cwd=ROOT, env=env, input=stdin, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_the_command_uses_the_services_settings_and_writes_the_new_key_there(alice, transactional_db, tmp_path):
    value = classic_token()
    do_store_secret(owner=alice, provider="github", kind="pat", value=value)
    env_file = services_file(
        tmp_path,
        DATABASE_URL=processes.test_database_url(),
        ANYON_SECRET_KEY=os.environ["ANYON_SECRET_KEY"],
        ANYON_TEMP_DIR=str(tmp_path / "tmp"),
        ANYON_DATA_DIR=str(tmp_path / "data"),
        ALLOWED_HOSTS="anyon.example.com",
    )
    done = rotate("--new-key-file", "-", env=bare_env(ANYON_ENV_FILE=str(env_file)), stdin=NEW_KEY + "\n")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Using the services' settings from {env_file}" in done.stdout
    assert f"database: SQLite file {processes.test_database_url().removeprefix('sqlite:///')}" in done.stdout
    assert "re-encrypted 2 value(s)" in done.stdout  # the credential and the store's key canary
    assert NEW_KEY not in done.stdout + done.stderr
    written = read_env_file(env_file)
    assert written["ANYON_SECRET_KEY"] == NEW_KEY and written["ALLOWED_HOSTS"] == "anyon.example.com"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o640
    use_secret_key(NEW_KEY)  # a service restarted with the file
    assert fetch_secret(owner=alice, provider="github", purpose="t", actor="t").value == value
    assert check_secret_store().status == OK


def test_the_command_refuses_a_database_the_services_do_not_use(alice, transactional_db, tmp_path):
    do_store_secret(owner=alice, provider="github", kind="pat", value=classic_token())
    before = set(Secret.objects.values_list("value", flat=True))
    stray = tmp_path / "leftover.sqlite3"
    stray.write_bytes(b"")
    # The settings file names PostgreSQL; the shell has no DATABASE_URL: the default SQLite file would be opened.
    theirs = services_file(
        tmp_path, DATABASE_URL="postgres://anyon@127.0.0.1:9/anyon", ANYON_SECRET_KEY=os.environ["ANYON_SECRET_KEY"]
    )
    done = rotate(
        "--no-env-file", "--new-key-file", "-",
        env=bare_env(ANYON_ENV_FILE=str(theirs), ANYON_SECRET_KEY=os.environ["ANYON_SECRET_KEY"]), stdin=NEW_KEY,
    )  # fmt: skip
    assert done.returncode == 1 and "names another database" in done.stderr, done.stdout + done.stderr
    # No settings file at all, DEBUG off, no DATABASE_URL: the embedded default is refused unless asked for.
    nowhere = bare_env(ANYON_ENV_FILE=str(tmp_path / "none"), ANYON_SECRET_KEY=os.environ["ANYON_SECRET_KEY"])
    done = rotate("--new-key-file", "-", env=nowhere, stdin=NEW_KEY)
    assert done.returncode == 1 and "embedded default SQLite file" in done.stderr, done.stdout + done.stderr
    # A settings file naming a file that is not an Anyon database (a leftover): refused, nothing written.
    leftover = services_file(
        tmp_path, DATABASE_URL=f"sqlite:///{stray}", ANYON_SECRET_KEY=os.environ["ANYON_SECRET_KEY"]
    )
    done = rotate("--new-key-file", "-", env=bare_env(ANYON_ENV_FILE=str(leftover)), stdin=NEW_KEY)
    assert done.returncode == 1 and "is not an Anyon database" in done.stderr, done.stdout + done.stderr
    assert read_env_file(leftover)["ANYON_SECRET_KEY"] == os.environ["ANYON_SECRET_KEY"]
    assert set(Secret.objects.values_list("value", flat=True)) == before


def test_the_command_refuses_while_workers_run(alice, monkeypatch):
    now = timezone.now()
    WorkerProcess.objects.create(name="h:1:aa", queue="anyon", machine="m", pid=1, started_at=now, heartbeat_at=now)
    monkeypatch.setenv("ANYON_OLD_SECRET_KEY", OTHER_KEY)
    with pytest.raises(CommandError, match="Worker processes are running"):
        call_command("rotate_secret_key", allow_sqlite=True)
    WorkerProcess.objects.update(heartbeat_at=now - timedelta(minutes=5))  # stopped: the rotation may go on
    call_command("rotate_secret_key", allow_sqlite=True)


def test_a_store_on_another_key_is_a_doctor_failure_and_an_alert(alice, transactional_db):
    do_store_secret(owner=alice, provider="github", kind="pat", value=classic_token())
    assert check_secret_store().status == OK
    use_secret_key(OTHER_KEY)  # the settings got a new key, the store was never rotated
    check = check_secret_store()
    assert check.status == FAIL and "not the key the secret store was written with" in check.detail
    assert "rotate_secret_key" in check.fix
    assert Alert.objects.filter(kind=AlertKind.SECRET_LOOKUP_FAILED, message__contains="doctor").exists()
    # The real command line, as an operator runs it with that key.
    env = subprocess_env(ANYON_SECRET_KEY=OTHER_KEY, DOCKER_HOST="unix:///nonexistent/docker.sock")
    proc = subprocess.run(
        [sys.executable, "manage.py", "doctor"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 1 and "✗ secret store" in proc.stdout, proc.stdout


def test_a_process_takes_a_key_from_the_settings_file_only_when_it_decrypts_the_store(
    alice, transactional_db, tmp_path, settings
):
    from secrets_app.key_rotation import reload_secret_key

    value = classic_token()
    do_store_secret(owner=alice, provider="github", kind="pat", value=value)
    suite_key = os.environ["ANYON_SECRET_KEY"]
    settings.ANYON_ENV_FILE = services_file(tmp_path, ANYON_SECRET_KEY=OTHER_KEY)  # another installation's key
    use_secret_key(NEW_KEY)  # this process was left behind on some key
    assert reload_secret_key() is False  # the file's key does not decrypt the store: not taken
    assert settings.SECRET_KEY == NEW_KEY
    settings.ANYON_ENV_FILE.write_text(f"ANYON_SECRET_KEY={suite_key}\n")
    assert reload_secret_key() is True
    assert fetch_secret(owner=alice, provider="github", purpose="t", actor="t").value == value
