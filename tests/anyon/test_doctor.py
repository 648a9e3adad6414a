import os

import pytest
from django.core.management import CommandError, call_command


@pytest.mark.django_db
def test_doctor_fails_with_fix_when_engine_is_down(settings, tmp_path, capsys):
    settings.DOCKER_HOST = "unix:///nonexistent/docker.sock"
    settings.ANYON_TEMP_DIR = tmp_path
    os.chmod(tmp_path, 0o700)
    with pytest.raises(CommandError) as excinfo:
        call_command("doctor")
    out = capsys.readouterr().out
    assert "✗ docker engine" in out
    assert "fix: start Docker" in out
    assert "✓ database" in out
    assert "✓ migrations" in out
    assert "docker engine" in str(excinfo.value)


@pytest.mark.django_db
def test_doctor_json_lists_every_check(settings, tmp_path, capsys):
    settings.DOCKER_HOST = "unix:///nonexistent/docker.sock"
    settings.ANYON_TEMP_DIR = tmp_path / "missing"
    with pytest.raises(CommandError):
        call_command("doctor", "--json")
    import json

    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)}
    assert set(checks) == {
        "python",
        "database",
        "redis",
        "schedules",
        "queued tasks",
        "cache",
        "channel layer",
        "task queue",
        "migrations",
        "secret key",
        "secret store",
        "temp dir",
        "data dir",
        "container uid",
        "docker engine",
        "docker version",
        "container seccomp profile",
        "disk",
        "runtime image",
        "claude code",
        "worker",
        "docker hosts",
        "egress proxy",
        "wake-ups",
    }
    assert checks["temp dir"]["status"] == "fail" and "mkdir -p" in checks["temp dir"]["fix"]


def test_doctor_exits_nonzero_as_a_process(tmp_path):
    """The real command line: exit status 1 and the ✗ line, as an operator sees it."""
    import subprocess
    import sys

    env = dict(os.environ, DOCKER_HOST="unix:///nonexistent/docker.sock", DATABASE_URL=f"sqlite:///{tmp_path}/x.db")
    proc = subprocess.run(
        [sys.executable, "manage.py", "doctor"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert "✗ docker engine" in proc.stdout
    assert "✗ migrations" in proc.stdout  # a fresh database has not been migrated


@pytest.mark.parametrize(
    "case",
    ["no secret key", "no Docker", "no image"],
)
def test_doctor_runs_and_reports_in_every_configuration(tmp_path, case):
    """Doctor says what is missing as one of its lines, never as a traceback: no key (DEBUG off), no engine, an
    image that is not there."""
    import subprocess
    import sys

    from tests.fixtures.processes import ROOT

    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "DEBUG")}
    env.update(
        DJANGO_SETTINGS_MODULE="anyon.settings",
        DATABASE_URL=f"sqlite:///{tmp_path}/x.db",
        ANYON_TEMP_DIR=str(tmp_path / "t"),
        ANYON_DATA_DIR=str(tmp_path / "d"),
        ANYON_SECRET_KEY="k" * 48,
        DOCKER_HOST="unix:///nonexistent/docker.sock",
    )
    expected = ["✗ docker engine", "not reachable"]
    if case == "no secret key":
        env.pop("ANYON_SECRET_KEY")
        expected = ["✗ secret key", "ANYON_SECRET_KEY is not set"]
    elif case == "no image":
        env.pop("DOCKER_HOST")
        env["ANYON_CLOUD_IMAGE"] = "anyon/no-such-image:0"
        expected = ["✗ runtime image", "anyon/no-such-image:0 is not present"]
    proc = subprocess.run(
        [sys.executable, "manage.py", "doctor"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-2000:]
    assert proc.returncode == 1 and all(part in proc.stdout for part in expected), proc.stdout


def test_a_new_data_dir_is_created_0700(tmp_path):
    """The default SQLite setup (no DATABASE_URL) creates ANYON_DATA_DIR for this user only, whatever the umask."""
    import subprocess
    import sys

    from tests.fixtures.processes import ROOT

    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL",)}
    env.update(DJANGO_SETTINGS_MODULE="anyon.settings", ANYON_DATA_DIR=str(tmp_path / "new" / "var"))
    code = "import os; os.umask(0); import django; django.setup()"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, timeout=60)
    assert oct((tmp_path / "new" / "var").stat().st_mode & 0o777) == "0o700"


def test_a_new_sqlite_database_and_its_wal_are_0600(tmp_path):
    """The first connection of a fresh install (umask 0) leaves the database, -wal and -shm 0600."""
    import subprocess
    import sys

    from tests.fixtures.processes import ROOT

    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL",)}
    env.update(DJANGO_SETTINGS_MODULE="anyon.settings", ANYON_DATA_DIR=str(tmp_path / "var"))
    code = (
        "import os; os.umask(0); import django; django.setup(); from django.db import connection; "
        "c = connection.cursor(); c.execute('CREATE TABLE t (x)'); "
        "print(sorted((n, oct(os.stat(os.path.join({!r}, n)).st_mode & 0o777)) for n in os.listdir({!r})))"
    ).format(str(tmp_path / "var"), str(tmp_path / "var"))
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "'anyon.sqlite3-wal', '0o600'" in run.stdout and "'anyon.sqlite3', '0o600'" in run.stdout, run.stdout
