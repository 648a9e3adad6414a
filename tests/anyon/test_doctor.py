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
        "worker",
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
