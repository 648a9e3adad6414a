"""Redis, then PostgreSQL, stopped under a running installation (web server, worker, a real attempt in the real
image) and started again: every outage is a line, not a traceback.

While each is down: ``doctor`` prints a ✗ line naming it and exits non-zero without a traceback, ``/healthz`` answers
503 JSON naming the failing part, the admin answers (Redis down: the page with the failure on its dashboard;
database down: a 503 page with a sentence), and the worker writes a bounded number of lines. An attempt running across
the Redis outage ends correctly, its log whole. After each restart everything answers again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import requests

from tests.fixtures.processes import ROOT, start_asgi, start_process
from tests.fixtures.services import PostgresServer, RedisServer

pytestmark = [pytest.mark.docker]

OUTAGE_SECONDS = 10
#: Worker log lines a 10 s outage may cost: one when it starts and one when it ends, per worker process that noticed.
MAX_WORKER_LINES = 12

SETUP = """
import json
from django.contrib.auth.models import User
from execution.attempts.actions import do_create_task, do_start_attempt
User.objects.create_user("ops", password="ops password 123", is_staff=True, is_superuser=True)
user = User.objects.create_user("olga", password="olga password 123")
task = do_create_task(owner=user, title="outage", repo_url="https://github.com/acme/outage", base_branch="main",
                      prompt="p")
steps = ["sh", "-c", "for i in $(seq 1 30); do echo line $i; sleep 1; done"]
print("ID" + json.dumps(do_start_attempt(task=task, plan=[{"kind": "custom", "title": "steps", "argv": steps}]).pk))
"""


@pytest.fixture
def stack(runtime_image, tmp_path):
    redis_server, postgres = RedisServer(), PostgresServer()
    redis_server.start()
    postgres.start()
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    env.update(
        DATABASE_URL=postgres.url,
        REDIS_URL=redis_server.url,
        DJANGO_SETTINGS_MODULE="tests.settings",
        DEBUG="false",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        ANYON_TEMP_DIR=str(tmp_path / "anyon-tmp"),
        ANYON_CLOUD_NETWORK="none",
        PYTHONUNBUFFERED="1",
    )
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=300)
    web = start_asgi("outage-web", env)
    worker = start_process("outage-worker", [sys.executable, "manage.py", "qcluster"], env)
    yield env, web, worker, redis_server, postgres
    web.stop()
    worker.stop()
    redis_server.stop()
    postgres.remove()


def shell(env: dict, code: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def attempt_state(env: dict, attempt_id: int) -> dict:
    code = (
        "import json\nfrom execution.models import Attempt, LogRecord\n"
        f"a = Attempt.objects.get(pk={attempt_id})\n"
        f"records = LogRecord.objects.filter(attempt_id={attempt_id}).order_by('seq')\n"
        "lines = ''.join(records.values_list('text', flat=True))\n"
        "print('STATE' + json.dumps({'status': a.status, 'log': lines}))"
    )
    return json.loads(shell(env, code).split("STATE", 1)[1])


def doctor(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "doctor"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def signed_in(url: str, username: str, password: str) -> requests.Session:
    session = requests.Session()
    session.get(f"{url}/login/", timeout=10)
    session.post(
        f"{url}/login/",
        data={"username": username, "password": password, "csrfmiddlewaretoken": session.cookies["csrftoken"]},
        headers={"Referer": f"{url}/login/"},
        timeout=10,
    )
    return session


def wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"{what} within {timeout} s")


def lines_since(process, offset: int) -> list[str]:
    return process.output()[offset:].splitlines()


def test_redis_then_postgres_stopped_and_started_again(stack):
    env, web, worker, redis_server, postgres = stack
    attempt_id = json.loads(shell(env, SETUP).split("ID", 1)[1])
    ops = signed_in(web.url, "ops", "ops password 123")
    assert ops.get(f"{web.url}/admin/", timeout=30).status_code == 200
    wait_until(lambda: "line 3" in attempt_state(env, attempt_id)["log"], 120, "the attempt did not start")

    # --- Redis down, while the attempt runs ------------------------------------------------------------------
    worker_offset, web_offset = len(worker.output()), len(web.output())
    redis_server.stop()
    stopped = time.monotonic()
    report = doctor(env)
    assert report.returncode != 0 and "Traceback" not in report.stdout + report.stderr
    assert any(line.startswith("✗ redis") and "not reachable" in line for line in report.stdout.splitlines())
    health = requests.get(f"{web.url}/healthz", timeout=30)
    assert health.status_code == 503 and health.headers["Content-Type"] == "application/json"
    assert {"cache", "channel_layer", "broker"} <= set(health.json()["failing"])
    assert "database" not in health.json()["failing"]
    admin = ops.get(f"{web.url}/admin/", timeout=30)  # sessions live in the database: the console still works
    assert admin.status_code == 200 and "cannot read worker status" in admin.text
    time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped)))
    worker_lines = lines_since(worker, worker_offset)
    assert len(worker_lines) <= MAX_WORKER_LINES, "\n".join(worker_lines)
    assert not any("Traceback" in line for line in worker_lines), "\n".join(worker_lines)
    redis_server.start()

    final = wait_until(
        lambda: (s := attempt_state(env, attempt_id))["status"] not in ("queued", "provisioning", "running") and s,
        120,
        "the attempt did not end",
    )
    assert final["status"] == "succeeded", final
    steps = [line for line in final["log"].splitlines() if line.startswith("line")]
    assert steps == [f"line {i}" for i in range(1, 31)]  # every line once, in order, across the outage
    wait_until(lambda: requests.get(f"{web.url}/healthz", timeout=30).json().get("failing") is None or None, 60,
               "/healthz did not recover")  # fmt: skip
    web_lines = lines_since(web, web_offset)
    assert not any("Traceback" in line or "Exception inside application" in line for line in web_lines), web_lines
    assert any("redis reachable again" in line for line in lines_since(worker, worker_offset))

    # --- PostgreSQL down -------------------------------------------------------------------------------------
    worker_offset, web_offset = len(worker.output()), len(web.output())
    postgres.stop()
    stopped = time.monotonic()
    report = doctor(env)
    assert report.returncode != 0 and "Traceback" not in report.stdout + report.stderr
    assert any(line.startswith("✗ database") and "not reachable" in line for line in report.stdout.splitlines())
    health = requests.get(f"{web.url}/healthz", timeout=30)
    assert health.status_code == 503 and "database" in health.json()["failing"]
    admin = ops.get(f"{web.url}/admin/", timeout=30)
    assert admin.status_code == 503 and admin.headers["Retry-After"]
    assert "cannot reach its database right now" in admin.text
    page = ops.get(f"{web.url}/tasks/", timeout=30)
    assert page.status_code == 503 and "cannot reach its database right now" in page.text
    time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped)))
    worker_lines = lines_since(worker, worker_offset)
    assert len(worker_lines) <= MAX_WORKER_LINES, "\n".join(worker_lines)
    web_lines = lines_since(web, web_offset)
    assert not any("Traceback" in line for line in web_lines), "\n".join(web_lines)
    postgres.start()

    wait_until(lambda: requests.get(f"{web.url}/healthz", timeout=30).json().get("failing") is None or None, 60,
               "/healthz did not recover")  # fmt: skip
    assert ops.get(f"{web.url}/admin/", timeout=30).status_code == 200
    assert any(line.startswith("✓ database") for line in doctor(env).stdout.splitlines())
