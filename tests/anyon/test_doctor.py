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
        "database",
        "migrations",
        "secret key",
        "temp dir",
        "docker engine",
        "runtime image",
        "claude code",
        "worker",
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


def test_wakeups_check_says_what_is_slower_and_how_to_fix_it(settings, tmp_path):
    from anyon.health import OK, WARN, check_wakeups
    from shared.wakeups.sockets import Listener

    settings.REDIS_URL = ""
    settings.ANYON_WAKEUP_DIR = str(tmp_path / "wake")
    listener = Listener("layer")
    try:
        check = check_wakeups()
        assert check.status == OK and "1 process(es) listening" in check.detail
    finally:
        listener.close()
    settings.ANYON_WAKEUP_DIR = ""
    check = check_wakeups()
    assert check.status == WARN and "waits for the polls" in check.detail and "unset ANYON_WAKEUP_DIR" in check.fix
    settings.ANYON_WAKEUP_DIR = str(tmp_path / ("long" * 25))
    assert "too long" in check_wakeups().detail
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    settings.ANYON_WAKEUP_DIR = str(blocker / "wake")
    check = check_wakeups()
    assert check.status == WARN and "cannot use" in check.detail


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
