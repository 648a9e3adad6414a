"""Task and attempt pages: creation with validation, ownership (404), cancel of a queued attempt."""

import json

import pytest
from django.contrib.auth.models import User

from execution.attempts.actions import do_create_task, do_start_attempt
from execution.models import Attempt, AttemptStatus, LogRecord, Run, RunKind, Task
from tests.fixtures.queueing import held_from_workers


@pytest.fixture
def task(alice):
    return do_create_task(
        owner=alice, title="Fix README", repo_url="https://github.com/acme/widgets", base_branch="main", prompt="Fix it"
    )


def test_create_task_through_the_form(alice_client):
    response = alice_client.post(
        "/tasks/new/",
        {"title": "Add tests", "repo_url": "https://github.com/acme/widgets", "base_branch": "main", "prompt": "Go"},
    )
    task = Task.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/tasks/{task.pk}/"
    assert task.repo_url == "https://github.com/acme/widgets.git"


@pytest.mark.parametrize(
    "repo_url", ["ext::sh -c id", "--upload-pack=id", "https://evil.example/acme/widgets", "file:///etc"]
)
@pytest.mark.hostile
def test_hostile_url_is_rejected_and_nothing_is_created(alice_client, repo_url):
    response = alice_client.post(
        "/tasks/new/", {"title": "x", "repo_url": repo_url, "base_branch": "main", "prompt": "p"}
    )
    assert response.status_code == 400 and b'data-testid="error-repo_url"' in response.content
    assert not Task.objects.exists() and not Attempt.objects.exists()


def test_start_attempt_queues_it_with_the_default_plan(alice_client, task, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = alice_client.post(f"/tasks/{task.pk}/attempts/")
    attempt = Attempt.objects.get()
    assert response["Location"] == f"/attempts/{attempt.pk}/"
    assert attempt.status == AttemptStatus.QUEUED and attempt.branch == f"anyon/attempt-{attempt.pk}"
    assert [step["kind"] for step in attempt.plan] == ["clone", "custom", "agent"]
    clone = attempt.plan[0]["argv"]
    assert clone[-3:] == ["--", "https://github.com/acme/widgets.git", "/workspace"]
    queued = [c for c in callbacks if getattr(c, "args", ())[:1] == ("execution.runner.run_attempt",)]
    assert len(queued) == 1  # enqueued only once the transaction commits


def test_cancel_a_queued_attempt(alice_client, task):
    with held_from_workers():
        attempt = do_start_attempt(task=task)
    alice_client.post(f"/attempts/{attempt.pk}/cancel/")
    attempt.refresh_from_db()
    assert attempt.status == AttemptStatus.CANCELLED and "Cancelled by alice" in attempt.error
    assert attempt.finished_at is not None


def test_attempt_page_shows_logs_and_runs(alice_client, task):
    with held_from_workers():
        attempt = do_start_attempt(task=task)
    LogRecord.objects.create(attempt=attempt, seq=1, stream="stdout", text="hello <b>world</b>\n")
    html = alice_client.get(f"/attempts/{attempt.pk}/").content.decode()
    assert "hello &lt;b&gt;world&lt;/b&gt;" in html and 'data-after="1"' in html
    assert 'data-status="queued"' in html


def test_attempt_page_names_its_docker_host_when_there_are_several(alice_client, task, settings):
    with held_from_workers():
        attempt = do_start_attempt(task=task)
    assert 'data-testid="attempt-host"' not in alice_client.get(f"/attempts/{attempt.pk}/").content.decode()
    settings.ANYON_WORKER_QUEUES = ["host-a", "host-b"]
    with held_from_workers():
        attempt = do_start_attempt(task=task)
    html = alice_client.get(f"/attempts/{attempt.pk}/").content.decode()
    assert f'data-testid="attempt-host">Docker host: <code>{attempt.queue}</code>' in html


@pytest.mark.parametrize(
    ("status", "clone", "expected"),
    [
        ("cancelled", "succeeded", "Cancelled after the repository was cloned, before any changes were recorded"),
        ("timed_out", "succeeded", "Timed out after the repository was cloned"),
        ("cancelled", "cancelled", "Cancelled before the repository was cloned"),
        ("failed", "failed", "Failed before the repository was cloned"),
        ("failed", None, "Failed before the repository was cloned"),
    ],
)
def test_an_ended_attempt_without_results_says_where_it_stopped(alice_client, task, status, clone, expected):
    """After a cancel the clone had succeeded, yet the page promised changes "once the repository
    is cloned"."""
    with held_from_workers():
        attempt = do_start_attempt(task=task)
    if clone:
        Run.objects.create(attempt=attempt, kind=RunKind.CLONE, title="Clone repository", status=clone, exit_code=0)
    Attempt.objects.filter(pk=attempt.pk).update(status=status)
    html = alice_client.get(f"/attempts/{attempt.pk}/").content.decode()
    assert expected in html
    assert "once the repository is cloned" not in html and "Create pull request" not in html


def test_an_active_attempt_still_promises_its_changes(alice_client, task):
    with held_from_workers():
        attempt = do_start_attempt(task=task)
    assert (
        "Changes appear here once the repository is cloned"
        in alice_client.get(f"/attempts/{attempt.pk}/").content.decode()
    )


@pytest.mark.hostile
def test_other_users_tasks_and_attempts_are_404(client, task, db, settings):
    settings.DOCKER_HOST = "unix:///nonexistent/docker.sock"
    with held_from_workers():
        attempt = do_start_attempt(task=task)
    mallory = User.objects.create_user("mallory", password="m password 123")
    client.force_login(mallory)
    for url in (f"/tasks/{task.pk}/", f"/attempts/{attempt.pk}/"):
        assert client.get(url).status_code == 404
    for url in (f"/tasks/{task.pk}/attempts/", f"/attempts/{attempt.pk}/cancel/"):
        assert client.post(url).status_code == 404
    assert b"Fix README" not in client.get("/tasks/").content
    attempt.refresh_from_db()
    assert attempt.status == AttemptStatus.QUEUED and Attempt.objects.count() == 1


def test_status_only_moves_forward(task):
    from execution.attempts.actions import do_transition

    with held_from_workers():
        attempt = do_start_attempt(task=task)
    assert do_transition(attempt=attempt, to=AttemptStatus.PROVISIONING)
    assert not do_transition(attempt=attempt, to=AttemptStatus.QUEUED)
    assert do_transition(attempt=attempt, to=AttemptStatus.RUNNING)
    assert do_transition(attempt=attempt, to=AttemptStatus.SUCCEEDED)
    for later in (AttemptStatus.RUNNING, AttemptStatus.FAILED, AttemptStatus.CANCELLED):
        assert not do_transition(attempt=attempt, to=later)
    attempt.refresh_from_db()
    assert attempt.status == AttemptStatus.SUCCEEDED


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        ("\x00 \x00", "Write what Claude should do"),
        ("x" * 1_000_001, "the limit is 1,000,000"),
        ("é" * 600_000, "1,200,000 bytes"),
        ("   ", "Write what Claude should do"),
    ],
)
def test_prompts_too_long_or_empty_are_refused(alice_client, prompt, message):
    response = alice_client.post(
        "/tasks/new/",
        {"title": "t", "repo_url": "https://github.com/acme/widgets", "base_branch": "main", "prompt": prompt},
    )
    assert response.status_code == 400 and not Task.objects.exists()
    assert message in response.content.decode()


def test_a_prompt_with_nul_is_kept_exactly_and_shown_as_a_symbol(alice_client, django_capture_on_commit_callbacks):
    """NUL cannot be in a command line but can be on standard input, where the prompt goes: it is kept, byte for byte,
    on every database (PostgreSQL text cannot hold NUL, so the column holds it escaped)."""
    from django.db import connection

    from execution.prompts import ESC

    prompt = f"fix\x00it; {ESC}0 is not NUL, {ESC}{ESC} is not an escape\n\x00"
    response = alice_client.post(
        "/tasks/new/",
        {"title": "t", "repo_url": "https://github.com/acme/widgets", "base_branch": "main", "prompt": prompt},
    )
    task = Task.objects.get()
    assert response.status_code == 302 and task.prompt == prompt
    with connection.cursor() as cursor:
        cursor.execute("SELECT prompt FROM execution_task WHERE id = %s", [task.pk])
        (raw,) = cursor.fetchone()
    assert "\x00" not in raw
    page = alice_client.get(f"/tasks/{task.pk}/").content.decode()
    assert "fix\u2400it;" in page and "\x00" not in page
    with held_from_workers():
        attempt = do_start_attempt(task=task)
    assert "fix" not in json.dumps(attempt.plan)  # the plan names the prompt only: no copy, no NUL in JSON
    Attempt.objects.filter(pk=attempt.pk).update(
        status=AttemptStatus.SUCCEEDED, workspace_volume="anyon-ws-test", base_commit="a" * 40
    )
    with django_capture_on_commit_callbacks():  # the job is enqueued on commit: not here
        alice_client.post(f"/attempts/{attempt.pk}/follow-up/", {"prompt": "more\x00"})
    assert attempt.jobs.get().prompt == "more\x00"


def test_a_refused_follow_up_says_why(alice_client, task):
    with held_from_workers():
        attempt = do_start_attempt(task=task)
    page = alice_client.post(f"/attempts/{attempt.pk}/follow-up/", {"prompt": "é" * 600_000}, follow=True)
    assert "1,200,000 bytes; the limit is 1,000,000" in page.content.decode() and not attempt.jobs.exists()
