"""The snapshot item of ``make bench`` (``ANYON_BENCH_ONLY=snapshots``), in a process of its own: how long an
attempt takes from its start to the agent's first API request, for a repository without setup, for the first
attempt on a repository whose setup takes about 20 s (``sleep 20`` and a file), and for the next ones, which start
from that setup's snapshot; then the snapshot's disk cost and what the sweep removes.

Attempts run in this process through ``execution.runner.run_attempt`` (the worker's entry, without the queue's
pick-up, the same for every figure) against the real engine and runtime image, a fake GitHub (git over HTTP) and a
fake Anthropic API on 127.0.0.1 (containers on the host network, mounted mode). Prints ``RESULT {json}``.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.live_stack import configure  # noqa: E402

configure("bench-snap", ANYON_CLOUD_NETWORK="host", ANYON_CREDENTIAL_MODE="mounted", ANYON_POOL_SIZE="0")

import django  # noqa: E402

django.setup()

import docker  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402

from execution.attempts.actions import do_create_task, do_start_attempt  # noqa: E402
from execution.environments.actions import do_save_environment  # noqa: E402
from execution.models import Attempt, AttemptStatus, RunKind, Snapshot  # noqa: E402
from execution.runner import run_attempt  # noqa: E402
from execution.sweeps.snapshots import sweep_snapshots  # noqa: E402
from secrets_app.secret_store import do_store_secret  # noqa: E402
from shared.docker import labels as label  # noqa: E402
from tests.fakes.anthropic_api import FakeAnthropicAPI  # noqa: E402
from tests.fakes.github import FakeGitHub  # noqa: E402
from tests.fixtures.queueing import held_from_workers  # noqa: E402

RUNS = int(os.environ.get("ANYON_BENCH_SNAPSHOT_RUNS", "3"))
SETUP = "sleep 20 && echo prepared > /var/tmp/prepared && mkdir -p node_modules && echo dep > node_modules/dep.js"
GITHUB_TOKEN = "ghp_" + "S" * 30 + "napsh0t001"
CLAUDE_TOKEN = "sk-ant-oat01-" + "b" * 60 + "AA"


class TimedAPI(FakeAnthropicAPI):
    """The fake API noting when each agent turn's request arrived."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.arrivals: list[float] = []

    def _next_reply(self, request):
        self.arrivals.append(time.perf_counter())
        return super()._next_reply(request)


def to_first_request(api: TimedAPI, user, repo: str) -> tuple[float, Attempt]:
    task = do_create_task(owner=user, title="bench", repo_url=repo, base_branch="main", prompt="Say pong")
    with held_from_workers():
        attempt = do_start_attempt(task=task)
    seen = len(api.arrivals)
    started = time.perf_counter()
    status = run_attempt(attempt.pk)
    attempt.refresh_from_db()
    if status != AttemptStatus.SUCCEEDED or len(api.arrivals) == seen:
        raise RuntimeError(f"attempt {attempt.pk} {status}: {attempt.error}")
    return api.arrivals[seen] - started, attempt


def snapshot_objects(client: docker.DockerClient) -> tuple[int, int]:
    ours = [f"{label.INSTANCE}={settings.ANYON_INSTANCE}", label.SNAPSHOT]
    return len(client.images.list(filters={"label": ours})), len(client.volumes.list(filters={"label": ours}))


def main() -> None:
    call_command("migrate", verbosity=0)
    client = docker.from_env(timeout=120)
    user = User.objects.create_user("bench-snap")
    do_store_secret(owner=user, provider="github", kind="pat", value=GITHUB_TOKEN, account_login="bench")
    do_store_secret(owner=user, provider="claude", kind="oauth_token", value=CLAUDE_TOKEN)
    try:
        with FakeGitHub() as github, TimedAPI(expected_token=CLAUDE_TOKEN) as api:
            settings.ANYON_GITHUB_URL, settings.ANYON_GITHUB_API_URL = github.url, github.api_url
            settings.ANYON_ANTHROPIC_API_URL = api.url
            github.add_token(GITHUB_TOKEN, login="bench")
            files = {"README.md": "# bench\n", "package-lock.json": "{}\n"}
            plain = github.add_repo("acme", "plain", files)
            prepared = github.add_repo("acme", "prepared", files)
            do_save_environment(owner=user, repository="acme/prepared", setup_script=SETUP)
            to_first_request(api, user, plain)  # a warm-up, not counted: the first attempt of the process is slower
            plains = [to_first_request(api, user, plain)[0] for _ in range(RUNS)]
            first, first_attempt = to_first_request(api, user, prepared)
            cached = []
            for _ in range(RUNS):
                seconds, attempt = to_first_request(api, user, prepared)
                if attempt.runs.filter(kind=RunKind.SETUP).exists() or attempt.from_snapshot_of is None:
                    raise RuntimeError(f"attempt {attempt.pk} did not start from the snapshot")
                cached.append(seconds)
            snapshot = Snapshot.objects.get()
            before = snapshot_objects(client)
            settings.ANYON_SNAPSHOT_MAX_AGE_DAYS = 0  # every snapshot is past its age: what the sweep removes
            swept = time.perf_counter()
            report = sweep_snapshots()
            swept = time.perf_counter() - swept
            after = snapshot_objects(client)
    finally:
        for container in client.containers.list(
            all=True, filters={"label": f"anyon.instance={settings.ANYON_INSTANCE}"}
        ):
            container.remove(force=True)
        for volume in client.volumes.list(filters={"label": f"anyon.instance={settings.ANYON_INSTANCE}"}):
            volume.remove(force=True)
    plain_p50, cached_p50 = statistics.median(plains), statistics.median(cached)
    result = {
        "runs": RUNS,
        "no_setup_p50_s": round(plain_p50, 3),
        "first_with_setup_s": round(first, 3),
        "setup_s": round(first_attempt.setup_seconds or 0, 3),
        "from_snapshot_p50_s": round(cached_p50, 3),
        "from_snapshot_s": [round(s, 3) for s in cached],
        "ratio_to_no_setup": round(cached_p50 / plain_p50, 3),
        "target_ratio_to_no_setup": 1.3,
        "ratio_to_first": round(cached_p50 / first, 3),
        "target_ratio_to_first": 0.2,
        "snapshot_bytes": snapshot.size_bytes,
        "snapshot_images_volumes_before_sweep": list(before),
        "snapshot_images_volumes_after_sweep": list(after),
        "sweep_removed": len(report.removed),
        "sweep_s": round(swept, 3),
    }
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
