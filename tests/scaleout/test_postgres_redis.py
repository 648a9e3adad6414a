"""Scale-out: PostgreSQL + Redis, two web processes and two workers, the same code with other settings.

No attempt runs twice, and a viewer on either web process sees the live log pushed through Redis (the database
poll is set to 30 s here, so lines arriving within seconds prove the push path).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.fixtures.browser import login
from tests.fixtures.processes import ARTIFACTS, ROOT, start_asgi, start_process

pytestmark = [pytest.mark.docker, pytest.mark.browser]

SETUP = """
import json
from django.contrib.auth.models import User
from execution.attempts.actions import do_create_task, do_start_attempt
from execution.models import Task
user = User.objects.create_user("scale", password="scale password 123")
nul = do_create_task(owner=user, title="nul", repo_url="https://github.com/a/nul", base_branch="main", prompt="a\\x00b")
assert Task.objects.get(pk=nul.pk).prompt == "a\\x00b", "PostgreSQL did not give the prompt back"
task = do_create_task(
    owner=user, title="scale", repo_url="https://github.com/acme/scale", base_branch="main", prompt="p"
)
slow = ["sh", "-c", "for i in $(seq 1 40); do echo line $i; sleep 0.5; done"]  # 20 s: both viewers open meanwhile
fast = ["sh", "-c", "echo quick $HOSTNAME"]
ids = [do_start_attempt(task=task, plan=[{"kind": "custom", "title": "slow", "argv": slow}]).pk]
ids += [do_start_attempt(task=task, plan=[{"kind": "custom", "title": "fast", "argv": fast}]).pk for _ in range(7)]
print("IDS" + json.dumps(ids))
"""


@pytest.fixture
def cluster(postgres_url, redis_url, runtime_image, tmp_path):
    import os

    env = {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    env.update(
        DATABASE_URL=postgres_url,
        REDIS_URL=redis_url,
        DJANGO_SETTINGS_MODULE="tests.settings",
        DEBUG="false",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        ANYON_TEMP_DIR=str(tmp_path / "anyon-tmp"),
        ANYON_CLOUD_NETWORK="none",
        ANYON_LOG_POLL_SECONDS="30",
        PYTHONUNBUFFERED="1",
    )
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=300)
    processes, webs = [], []
    for n in range(2):
        web = start_asgi(f"scaleout-web-{n}", env)
        processes.append(web)
        webs.append(web)
    for n in range(2):
        processes.append(start_process(f"scaleout-worker-{n}", [sys.executable, "manage.py", "qcluster"], env))
    yield env, webs
    for proc in processes:
        proc.stop()


def query(postgres_url: str, sql: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(postgres_url.replace("postgres://", "postgresql://")) as conn:
        return conn.execute(sql).fetchall()


def test_two_webs_two_workers_on_postgres_and_redis(cluster, page, postgres_url):
    env, (web_a, web_b) = cluster
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", SETUP], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    ids = json.loads(done.stdout.split("IDS", 1)[1])
    # PostgreSQL text cannot hold NUL: the prompt went in escaped and came back whole (asserted in SETUP).
    assert query(postgres_url, "SELECT prompt FROM execution_task WHERE title = 'nul'") == [("a\U0010fffd0b",)]
    login(page, web_a.url, "scale", "scale password 123")
    page.goto(f"{web_a.url}/attempts/{ids[0]}/")
    other = page.context.new_page()
    other.goto(f"{web_b.url}/attempts/{ids[0]}/")  # same session cookie, the other web process
    for viewer in (page, other):
        viewer.wait_for_function("() => document.getElementById('log').textContent.includes('line 5')", timeout=60_000)
        assert viewer.get_by_test_id("attempt-status").get_attribute("data-status") == "running"
    other.screenshot(path=str(ARTIFACTS / "scaleout-viewer-b.png"), full_page=True)
    for viewer in (page, other):
        viewer.wait_for_selector('[data-testid="attempt-status"][data-status="succeeded"]', timeout=60_000)
        assert "line 40" in viewer.get_by_test_id("log").inner_text()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        states = dict(query(postgres_url, "SELECT id, status FROM execution_attempt"))
        # django-q2 saves its task record after the function returns: wait for those too.
        (saved,) = query(postgres_url, "SELECT count(*) FROM django_q_task WHERE name LIKE 'attempt-%'")[0]
        if all(states[i] in ("succeeded", "failed") for i in ids) and saved >= len(ids):
            break
        time.sleep(0.5)
    assert all(states[i] == "succeeded" for i in ids), states
    runs = dict(query(postgres_url, "SELECT attempt_id, count(*) FROM execution_run GROUP BY attempt_id"))
    assert all(runs[i] == 1 for i in ids), runs  # no attempt ran twice
    executions = query(
        postgres_url, "SELECT name, count(*) FROM django_q_task WHERE name LIKE 'attempt-%' GROUP BY name"
    )
    assert all(count == 1 for _, count in executions) and len(executions) == len(ids)
    workers = {w for (w,) in query(postgres_url, "SELECT DISTINCT worker FROM execution_attempt")}
    assert len(workers) >= 2, workers  # the work was shared between worker processes
