"""A server the app needs (the database, Redis) not answering is an outage, said in a line: a page answers 503 with a
sentence, ``doctor`` prints a ✗ line and exits non-zero, and an unsafe temp dir stops the processes in one line. None
of them shows a traceback. (tests/scaleout/test_outages.py stops real servers under a running installation.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import redis.exceptions
from django.db import OperationalError

from tests.fixtures.processes import ROOT, free_port

REFUSED = 'connection failed: connection to server at "127.0.0.1", port 1 failed: Connection refused'


@pytest.fixture
def signed_in(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("pia", password="pia password 123"))
    return client


def fail_with(monkeypatch, exc: Exception) -> None:
    def broken(**kwargs):
        raise exc

    monkeypatch.setattr("execution.attempts.selectors.tasks_for", broken)


@pytest.mark.django_db
def test_a_database_outage_in_a_page_is_a_503_with_a_sentence(signed_in, monkeypatch, caplog):
    fail_with(monkeypatch, OperationalError(REFUSED))
    for _ in range(3):
        response = signed_in.get("/tasks/")
        assert response.status_code == 503 and response["Retry-After"] == "30"
        assert "Anyon Cloud cannot reach its database right now" in response.content.decode()
    outage_lines = [r for r in caplog.records if r.name == "anyon.outages"]
    assert len(outage_lines) == 1 and "database unreachable" in outage_lines[0].getMessage()
    assert not any(r.exc_info for r in caplog.records)  # no traceback in the log, one line for three requests
    as_json = signed_in.get("/tasks/", HTTP_ACCEPT="application/json")
    assert as_json.status_code == 503 and as_json.json()["failing"] == ["database"]


@pytest.mark.django_db
def test_a_redis_outage_in_a_page_is_a_503_naming_redis(signed_in, monkeypatch):
    fail_with(monkeypatch, redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379."))
    response = signed_in.get("/tasks/")
    assert response.status_code == 503 and "cannot reach Redis" in response.content.decode()


@pytest.mark.django_db
def test_a_bug_is_not_taken_for_an_outage(signed_in, monkeypatch):
    fail_with(monkeypatch, ValueError("a bug"))
    with pytest.raises(ValueError, match="a bug"):
        signed_in.get("/tasks/")


def run_command(argv: list[str], **env: str) -> subprocess.CompletedProcess:
    """``manage.py`` in a subprocess; a command that does not end within a minute (a worker that started) is
    stopped with its process group and counts as a failure."""
    full_env = {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    full_env.update(DJANGO_SETTINGS_MODULE="tests.settings", **env)
    proc = subprocess.Popen(
        [sys.executable, "manage.py", *argv], cwd=ROOT, env=full_env, text=True, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"manage.py {' '.join(argv)} did not stop:\n{out[-2000:]}\n{err[-2000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_doctor_with_redis_down_prints_a_line_not_a_traceback(tmp_path):
    """The Claude Code check reads the latest release through the cache: a cache outage made doctor crash."""
    done = run_command(["doctor"], REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", ANYON_TEMP_DIR=str(tmp_path / "t"))
    assert done.returncode == 1 and "Traceback" not in done.stdout + done.stderr, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    for name in ("redis", "cache", "channel layer", "task queue"):
        assert any(line.startswith(f"✗ {name} ") and "Error 111 connecting" in line for line in lines), name
    assert "required check(s) failed: redis, cache, channel layer, task queue" in done.stderr


def test_doctor_with_the_database_down_prints_a_line_not_a_traceback(tmp_path):
    done = run_command(["doctor"], DATABASE_URL=f"postgres://anyon@127.0.0.1:{free_port()}/anyon",
                       ANYON_TEMP_DIR=str(tmp_path / "t"))  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stdout + done.stderr, done.stderr[-3000:]
    assert any(line.startswith("✗ database ") and "not reachable" in line for line in done.stdout.splitlines())


@pytest.mark.hostile
@pytest.mark.parametrize("command", [["serve", "--no-worker", "--port", "0"], ["qcluster"]])
def test_a_temp_dir_another_user_made_stops_the_service_in_one_line(command, tmp_path):
    """Another local user who made ANYON_TEMP_DIR first would read every secret written below it: the web server and
    the worker refuse to start, with one line that says why and what to do, and exit 1."""
    temp = tmp_path / "anyon"
    if os.geteuid() == 0:
        temp.mkdir(mode=0o755)
        os.chown(temp, 65534, 65534)  # nobody's
    else:  # without root, a symlink to a folder elsewhere is refused the same way
        (tmp_path / "elsewhere").mkdir()
        temp.symlink_to(tmp_path / "elsewhere")
    done = run_command(command, ANYON_TEMP_DIR=str(temp))
    assert done.returncode == 1 and "Traceback" not in done.stdout + done.stderr, done.stderr[-3000:]
    message = [line for line in done.stderr.splitlines() if "ANYON_TEMP_DIR" in line]
    assert len(message) == 1 and str(temp) in message[0] and "remove it" in message[0]
