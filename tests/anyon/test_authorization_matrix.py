"""Every URL route tried as anonymous, as another user and as staff; CSRF enforced on every state change.

The matrix must name every route: a new view without an entry here fails the test.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from execution.attempts.actions import do_create_task, do_start_attempt
from execution.attempts.runs import do_record_tool_output
from execution.environments.actions import do_save_environment, do_set_setup_secret
from execution.models import Attempt, AttemptJob, Run, Snapshot
from secrets_app.models import GitHubDeviceFlow
from secrets_app.secret_store import do_store_secret
from tests.fakes.github import classic_token
from tests.fixtures.queueing import held_from_workers

pytestmark = pytest.mark.hostile  # attacks: counted in docs/QA_CHECKLIST.md

LOGIN = "login"  # a redirect to the login page
# route name -> (method, expected for anonymous, for another user, for staff)
MATRIX = {
    "home": ("GET", LOGIN, 200, 200),
    "healthz": ("GET", 503, 503, 503),
    "login": ("GET", 200, 302, 302),
    "logout": ("POST", 302, 302, 302),
    "settings": ("GET", LOGIN, 200, 200),
    "settings-card": ("GET", LOGIN, 200, 200),
    "github-pat": ("POST", LOGIN, 400, 400),
    "github-device-start": ("POST", LOGIN, 302, 302),
    "github-device-poll": ("POST", LOGIN, 404, 404),
    "github-device-cancel": ("POST", LOGIN, 404, 404),
    "secret-check": ("POST", LOGIN, 404, 404),
    "secret-revoke": ("POST", LOGIN, 404, 404),
    "task-list": ("GET", LOGIN, 200, 200),
    "task-create": ("GET", LOGIN, 200, 200),
    "task-repositories": ("GET", LOGIN, 200, 200),  # the signed-in user's own list, never the owner's
    "task-detail": ("GET", LOGIN, 404, 404),  # tasks are private, also to staff (they use the admin)
    "attempt-start": ("POST", LOGIN, 404, 404),
    "attempt-detail": ("GET", LOGIN, 404, 200),  # staff may look at any attempt (ops)
    "tool-output": ("GET", LOGIN, 404, 200),  # a whole tool output of the log: the attempt page's rule
    "attempt-cancel": ("POST", LOGIN, 404, 302),
    # only the owner makes an attempt act with their credentials, or deletes it; staff may stop it
    "attempt-follow-up": ("POST", LOGIN, 404, 404),
    "attempt-pull-request": ("POST", LOGIN, 404, 404),
    "job-cancel": ("POST", LOGIN, 404, 302),
    "attempt-delete": ("POST", LOGIN, 404, 404),
    # environments are private, also to staff: a repository's page is the user's own (empty) one
    "environment-list": ("GET", LOGIN, 200, 200),
    "environment-detail": ("GET", LOGIN, 200, 200),
    "environment-delete": ("POST", LOGIN, 404, 404),
    "setup-secret-save": ("POST", LOGIN, 400, 400),
    "setup-secret-delete": ("POST", LOGIN, 404, 404),
    "environment-accept-proposal": ("POST", LOGIN, 404, 404),  # the owner's own proposal (the owner's attempt has one)
    "attempt-allow-host": ("POST", LOGIN, 404, 404),  # "allow for this attempt": the owner's alone
    # snapshots are their owner's: the list shows one's own, staff drop others' in the admin only
    "snapshot-list": ("GET", LOGIN, 200, 200),
    "snapshot-drop": ("POST", LOGIN, 404, 404),
}


def routes(patterns=None, prefix=""):
    for p in patterns if patterns is not None else get_resolver().url_patterns:
        if isinstance(p, URLResolver):
            if str(p.pattern).startswith("admin"):
                continue
            yield from routes(p.url_patterns, prefix + str(p.pattern))
        elif isinstance(p, URLPattern):
            yield p.name, prefix + str(p.pattern)


@pytest.fixture
def objects(db, settings):
    settings.DOCKER_HOST = "unix:///nonexistent/docker.sock"
    owner = User.objects.create_user("owner", password="owner password 1")
    task = do_create_task(
        owner=owner, title="Owner-only plan", repo_url="https://github.com/a/b", base_branch="main", prompt="p"
    )
    with held_from_workers():
        attempt = do_start_attempt(task=task)
    job = AttemptJob.objects.create(attempt=attempt, kind="follow_up", prompt="x", status="succeeded")
    run = Run.objects.create(attempt=attempt, kind="agent", title="Claude Code")
    do_record_tool_output(run=run, number=1, text="Owner-only output", chars=17)
    secret = do_store_secret(owner=owner, provider="github", kind="pat", value=classic_token())
    flow = GitHubDeviceFlow.objects.create(
        owner=owner,
        session_key="owner-session",
        device_code="dc",
        user_code="AAAA-BBBB",
        verification_uri="https://github.com/login/device",
        expires_at=timezone.now() + timedelta(minutes=5),
        next_poll_at=timezone.now(),
    )
    environment = do_save_environment(owner=owner, repository="a/b", setup_script="echo Owner-only plan")
    setup_secret = do_set_setup_secret(environment=environment, name="TOKEN", value=classic_token())
    now = timezone.now()
    snapshot = Snapshot.objects.create(
        owner=owner, environment=environment, repo_url="https://github.com/a/owner-only-snapshot.git", queue="anyon",
        key="k" * 64, setup_hash="h" * 64, runtime_image_id="sha256:r", image="anyon-snapshot:x", created_at=now,
        last_used_at=now,
    )  # fmt: skip
    proposal = {"policy": {"mode": "rules", "presets": [], "rules": [{"host": "owner-only.example"}]}, "text": ""}
    Attempt.objects.filter(pk=attempt.pk).update(network_record={"proposals": {"clone and setup": proposal}})
    return {
        "owner": "a", "name": "b", "setup_secret_id": setup_secret.pk,
        "provider": "github", "task_id": task.pk, "attempt_id": attempt.pk, "job_id": job.pk,
        "run_id": run.pk, "number": 1, "secret_id": secret.pk, "flow_id": flow.pk, "snapshot_id": snapshot.pk,
    }  # fmt: skip


def url_for(pattern: str, ids: dict) -> str:
    import re

    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(ids[m.group(1)]), pattern)


def test_every_route_is_in_the_matrix():
    names = {name for name, _ in routes()}
    assert names == set(MATRIX), f"add to MATRIX: {sorted(names - set(MATRIX))}; stale: {sorted(set(MATRIX) - names)}"


@pytest.mark.parametrize("who", ["anonymous", "other", "staff"])
def test_matrix(objects, who):
    client = Client()
    if who != "anonymous":
        user = User.objects.create_user(who, password="x password 123", is_staff=who == "staff")
        client.force_login(user)
    column = {"anonymous": 1, "other": 2, "staff": 3}[who]
    failures = []
    # logout last: it ends the session the other requests need
    for name, pattern in sorted(routes(), key=lambda r: r[0] == "logout"):
        method, *expected = MATRIX[name]
        url = url_for(pattern, objects)
        response = client.get(url) if method == "GET" else client.post(url, {"prompt": "x"})
        want = expected[column - 1]
        if want == LOGIN:
            ok = response.status_code == 302 and response["Location"].startswith("/login/")
        else:
            ok = response.status_code == want
        if not ok:
            failures.append(f"{who} {method} {url}: {response.status_code}, expected {want}")
        if who == "other" and response.status_code == 200:  # pages another user may see show nothing of owner's
            assert b"AAAA-BBBB" not in response.content and b"Owner-only plan" not in response.content, url
            assert b"Owner-only output" not in response.content, url
            assert b"owner-only-snapshot" not in response.content, url
            assert b"owner-only.example" not in response.content, url  # the owner's proposed setup policy
    assert not failures, "\n".join(failures)


def test_csrf_is_enforced_on_every_state_change(objects):
    user = User.objects.get(username="owner")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    also_post = {
        "task-create",
        "login",
        "task-repositories",
        "environment-list",
        "environment-detail",
    }  # GET pages that also take a POST
    posts = [(name, pattern) for name, pattern in routes() if MATRIX[name][0] == "POST" or name in also_post]
    assert len(posts) == 24
    for name, pattern in posts:
        response = client.post(url_for(pattern, objects), {"prompt": "x"})
        assert response.status_code == 403, f"{name} accepted a POST without a CSRF token"
