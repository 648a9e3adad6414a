"""Two real Docker engines, one worker each (its own DOCKER_HOST, queue and temp dir), two web processes,
PostgreSQL, Redis and the browser: placement over the hosts, an engine lost mid-run, a worker lost.

Engine 2 is the second dockerd of tests/fixtures/engines.py; the test takes it away with SIGKILL (a host that is
gone does not shut down politely) and starts it again. Bounds asserted: an attempt of a lost engine ends within
ENGINE_LOST_BOUND seconds, one of a lost worker within WORKER_LOST_BOUND (both hosts' workers run on this machine:
the live one sees at its next heartbeat that the killed worker process no longer exists).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures.browser import login
from tests.fixtures.processes import ARTIFACTS, ROOT, LiveProcess, start_asgi, start_process

pytestmark = [pytest.mark.docker, pytest.mark.browser]

REDIS_DBS = iter(range(1, 16))
ENGINE_LOST_BOUND = 30
WORKER_LOST_BOUND = 10
SLOW = ["sh", "-c", "for i in $(seq 1 40); do echo line $i; sleep 0.5; done"]  # 20 s

START = """
import json
from django.contrib.auth.models import User
from execution.attempts.actions import do_create_task, do_start_attempt
user, _ = User.objects.get_or_create(username="eng", defaults={"is_staff": True, "is_superuser": True})
if _:
    user.set_password("eng password 123"); user.save()
task = do_create_task(owner=user, title="eng", repo_url="https://github.com/acme/eng", base_branch="main", prompt="p")
argv, n = __ARGV__, __N__
print("IDS" + json.dumps([[a.pk, a.queue] for a in (
    do_start_attempt(task=task, plan=[{"kind": "custom", "title": "step", "argv": argv}]) for _ in range(n)
)]))
"""


class Cluster:
    def __init__(self, env: dict, webs: list[LiveProcess], worker_env: dict[str, dict], temp: dict[str, Path]):
        self.env, self.webs, self.worker_env, self.temp = env, webs, worker_env, temp
        self.workers: dict[str, LiveProcess] = {}

    def sql(self, query: str, *args) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.env["DATABASE_URL"].replace("postgres://", "postgresql://")) as conn:
            return conn.execute(query, args).fetchall()

    def start(self, argv: list[str], n: int) -> list[tuple[int, str]]:
        code = START.replace("__ARGV__", json.dumps(argv)).replace("__N__", str(n))
        done = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, env=self.env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return [tuple(row) for row in json.loads(done.stdout.split("IDS", 1)[1])]

    def status(self, attempt_id: int) -> tuple[str, str]:
        return self.sql("SELECT status, error FROM execution_attempt WHERE id = %s", attempt_id)[0]

    def hosts(self) -> dict[str, tuple[bool, float]]:
        """name -> (engine answered, seconds since the worker's last heartbeat)"""
        rows = self.sql("SELECT name, engine_ok, extract(epoch from now() - heartbeat_at) FROM execution_dockerhost")
        return {name: (ok, float(age)) for name, ok, age in rows}

    def start_worker(self, queue: str) -> LiveProcess:
        env = {**self.env, **self.worker_env[queue]}
        worker = start_process(f"engines-worker-{queue}", [sys.executable, "manage.py", "qcluster"], env)
        self.workers[queue] = worker
        return worker


def wait(predicate, timeout: float, what: str, step: float = 0.3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"{what}: not within {timeout} s")


@pytest.fixture
def cluster(request, postgres_url, redis_url, runtime_image, second_engine, tmp_path):
    import psycopg

    name = f"anyon_engines_{request.node.name[-40:].lower()}".replace("-", "_")
    admin = postgres_url.rsplit("/", 1)[0].replace("postgres://", "postgresql://") + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_ALLOW_ASYNC_UNSAFE", "DOCKER_HOST")}
    env.update(
        DATABASE_URL=postgres_url.rsplit("/", 1)[0] + "/" + name,
        REDIS_URL=redis_url.rsplit("/", 1)[0] + f"/{next(REDIS_DBS)}",  # a queue of its own: nothing left over
        DJANGO_SETTINGS_MODULE="tests.settings",
        DEBUG="false",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        ANYON_TEMP_DIR=str(tmp_path / "web"),
        ANYON_CLOUD_NETWORK="none",
        ANYON_WORKER_QUEUES="host-a,host-b",
        ANYON_HOST_HEARTBEAT_SECONDS="1",
        ANYON_HOST_LOST_SECONDS="8",
        ANYON_MAX_ACTIVE_ATTEMPTS_PER_USER="0",
        PYTHONUNBUFFERED="1",
    )
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=300)
    temp = {"host-a": tmp_path / "host-a", "host-b": tmp_path / "host-b"}
    webs = [start_asgi(f"engines-web-{n}", env) for n in range(2)]
    worker_env = {queue: {"ANYON_WORKER_QUEUE": queue, "ANYON_TEMP_DIR": str(temp[queue])} for queue in temp}
    worker_env["host-b"]["DOCKER_HOST"] = second_engine.url  # host-a's worker uses the default engine
    cluster = Cluster(env, webs, worker_env, temp)
    for queue in ("host-a", "host-b"):
        cluster.start_worker(queue)
    wait(
        lambda: {n for n, (ok, age) in cluster.hosts().items() if ok and age < 5} == {"host-a", "host-b"},
        60,
        "both workers report a healthy engine",
    )
    yield cluster
    for proc in [*webs, *cluster.workers.values()]:
        proc.stop()


def containers_of(client, attempt_id: int) -> list:
    return client.containers.list(all=True, filters={"label": f"anyon.attempt={attempt_id}"})


def test_placement_and_an_engine_lost_mid_run(cluster, second_engine, docker_client, page):
    engine2 = second_engine.client()
    placed = cluster.start(SLOW, 4)
    assert sorted(q for _, q in placed) == ["host-a", "host-a", "host-b", "host-b"]  # least busy first
    on_a = [i for i, q in placed if q == "host-a"]
    on_b = [i for i, q in placed if q == "host-b"]
    wait(
        lambda: (
            all(cluster.status(i)[0] == "running" for i, _ in placed)
            and cluster.sql("SELECT count(DISTINCT attempt_id) FROM execution_logrecord WHERE text LIKE '%%line 3%%'")[
                0
            ][0]
            == 4
        ),
        90,
        "all four attempts running and printing",
    )
    # Each attempt's container lives on its own host's engine, and its secret dir in that host's temp dir.
    for attempt_id in on_b:
        assert containers_of(engine2, attempt_id) and not containers_of(docker_client, attempt_id)
        assert (cluster.temp["host-b"] / "cloud-secrets" / str(attempt_id)).is_dir()
    for attempt_id in on_a:
        assert containers_of(docker_client, attempt_id) and not containers_of(engine2, attempt_id)
    web_a, web_b = cluster.webs
    login(page, web_a.url, "eng", "eng password 123")
    page.goto(f"{web_a.url}/attempts/{on_b[0]}/")
    assert page.get_by_test_id("attempt-host").inner_text() == "Docker host: host-b"

    lost_at = time.monotonic()
    second_engine.stop()
    for attempt_id in on_b:
        status, error = wait(
            lambda i=attempt_id: (s := cluster.status(i))[0] != "running" and s, ENGINE_LOST_BOUND, "engine-lost end"
        )
        assert status == "failed" and error.startswith("The Docker host went away: the engine of host host-b"), error
        assert not (cluster.temp["host-b"] / "cloud-secrets" / str(attempt_id)).exists()
    ended_after = time.monotonic() - lost_at
    page.wait_for_selector('[data-testid="attempt-status"][data-status="failed"]', timeout=10_000)
    assert "The Docker host went away" in page.get_by_test_id("attempt-error").inner_text()
    page.screenshot(path=str(ARTIFACTS / "engines-host-lost.png"), full_page=True)
    lost_alerts = "SELECT message FROM shared_alert WHERE kind = 'docker_host_lost'"
    (alert,) = wait(lambda: cluster.sql(lost_alerts), 10, "the docker_host_lost alert")
    assert alert[0].startswith("Docker host host-b: its engine stopped answering"), alert
    assert cluster.hosts()["host-b"][0] is False
    # While it is gone new attempts go to host-a only; host-a's attempts finish normally.
    meanwhile = cluster.start(["sh", "-c", "echo meanwhile"], 2)
    assert [q for _, q in meanwhile] == ["host-a", "host-a"]
    for attempt_id in [*on_a, *(i for i, _ in meanwhile)]:
        wait(lambda i=attempt_id: cluster.status(i)[0] == "succeeded", 90, f"attempt {attempt_id} succeeds")

    # Back: its worker sweeps what the engine kept of the ended attempts, and it takes new attempts again.
    second_engine.start()
    for attempt_id in on_b:
        wait(lambda i=attempt_id: not containers_of(engine2, i), 60, f"container of {attempt_id} swept")
    wait(lambda: cluster.hosts()["host-b"][0], 30, "host-b healthy again")
    after = cluster.start(["sh", "-c", "echo after"], 2)
    assert sorted(q for _, q in after) == ["host-a", "host-b"]
    for attempt_id, _ in after:
        wait(lambda i=attempt_id: cluster.status(i)[0] == "succeeded", 90, f"attempt {attempt_id} succeeds")
    runs = dict(cluster.sql("SELECT attempt_id, count(*) FROM execution_run GROUP BY attempt_id"))
    assert all(runs[i] == 1 for i, _ in [*placed, *meanwhile, *after]), runs  # none ran twice

    doctor = subprocess.run(
        [sys.executable, "manage.py", "doctor", "--json"], cwd=ROOT, env=cluster.env, capture_output=True, text=True
    )
    hosts_check = next(c for c in json.loads(doctor.stdout) if c["name"] == "docker hosts")
    assert hosts_check["detail"] == "host-a healthy (0 active); host-b healthy (0 active)", hosts_check
    page.goto(f"{web_b.url}/admin/")
    assert page.get_by_test_id("ops-host-state-host-b").inner_text() == "✓ healthy"
    page.goto(f"{web_b.url}/admin/execution/attempt/?queue=host-b")
    assert page.locator("#result_list").inner_text().count("host-b") == 3  # the two lost ones and the one after
    print(f"engine lost: its attempts ended {ended_after:.1f} s after the engine was killed")


def test_a_worker_lost_mid_run(cluster, second_engine, docker_client):
    engine2 = second_engine.client()
    placed = dict((q, i) for i, q in cluster.start(SLOW, 2))
    wait(lambda: all(cluster.status(i)[0] == "running" for i in placed.values()), 90, "both running")
    victim = placed["host-b"]
    wait(lambda: containers_of(engine2, victim), 30, "its container")
    lost_at = time.monotonic()
    os.killpg(cluster.workers["host-b"].proc.pid, signal.SIGKILL)  # the whole cluster: sentinel and workers
    cluster.workers["host-b"].proc.wait(timeout=10)
    status, error = wait(
        lambda: (s := cluster.status(victim))[0] != "running" and s, WORKER_LOST_BOUND, "worker-lost end"
    )
    ended_after = time.monotonic() - lost_at
    assert status == "failed" and error.startswith("The worker process "), error
    assert "of Docker host host-b stopped (its process" in error and "no longer exists" in error
    # Ended and alerted in one transaction, by host-a's worker.
    (alert,) = wait(lambda: cluster.sql("SELECT message FROM shared_alert WHERE kind = 'worker_lost'"), 10, "alert")
    assert alert[0].startswith("The worker process ") and f"attempt {victim}" in alert[0]
    # Nobody could reach host-b's engine meanwhile: the container and secret dir wait for its worker.
    assert containers_of(engine2, victim)
    assert cluster.status(placed["host-a"])[0] in ("running", "succeeded")
    wait(lambda: cluster.status(placed["host-a"])[0] == "succeeded", 60, "host-a's attempt succeeds")

    cluster.start_worker("host-b")
    wait(lambda: not containers_of(engine2, victim), 60, "its container swept by the restarted worker")
    wait(lambda: not (cluster.temp["host-b"] / "cloud-secrets" / str(victim)).exists(), 30, "its secret dir swept")
    time.sleep(3)  # the restarted worker had every chance to run it again
    assert cluster.status(victim)[0] == "failed"
    runs = dict(cluster.sql("SELECT attempt_id, count(*) FROM execution_run GROUP BY attempt_id"))
    assert runs == {victim: 1, placed["host-a"]: 1}, runs  # no attempt ran twice
    print(f"worker lost: its attempt ended {ended_after:.1f} s after the worker was killed")
