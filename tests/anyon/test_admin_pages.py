"""Every admin page of every registered model, with credentials stored, decrypted and used, renders for staff and
shows none of the credential values (nor their encrypted form). The pages are also kept for the end-of-session leak
sweep (tests/fixtures/leaks.py)."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.db import connection
from django.test import RequestFactory
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from execution.attempts.actions import do_create_task, do_start_attempt
from execution.logs.writer import LogWriter
from execution.models import AttemptJob, JobKind, Run, RunKind
from secrets_app.models import GitHubDeviceFlow
from secrets_app.secret_store import do_store_secret, fetch_secret
from shared.alerts import AlertKind, do_raise_alert
from tests.fakes.github import classic_token
from tests.fixtures.leaks import track_secret
from tests.fixtures.queueing import held_from_workers

pytestmark = pytest.mark.django_db


def populate(owner: User) -> list[str]:
    """One of everything the admin shows, made through the service functions where one exists."""
    values = [classic_token(), track_secret("sk-ant-oat01-" + "A" * 50 + "dminPg"), track_secret("device-" + "d" * 30)]
    do_store_secret(owner=owner, provider="github", kind="pat", value=values[0])
    do_store_secret(owner=owner, provider="claude", kind="oauth_token", value=values[1])
    fetch_secret(owner=owner, provider="github", purpose="clone", actor="worker", attempt_id=1)
    fetch_secret(owner=owner, provider="claude", purpose="agent", actor="worker", attempt_id=1)
    now = timezone.now()
    GitHubDeviceFlow.objects.create(
        owner=owner,
        session_key="s",
        device_code=values[2],
        user_code="ABCD-1234",
        verification_uri="https://github.com/login/device",
        expires_at=now + timedelta(minutes=15),
        next_poll_at=now,
    )
    task = do_create_task(owner=owner, title="t", repo_url="https://github.com/acme/a", base_branch="main", prompt="p")
    with held_from_workers():
        attempt = do_start_attempt(task=task)
    run = Run.objects.create(attempt=attempt, kind=RunKind.AGENT, title="Claude Code", argv=["anyon-exec", "claude"])
    writer = LogWriter(attempt.pk)
    writer.write(run.pk, "stdout", "token is ***\n")
    writer.close()
    AttemptJob.objects.create(attempt=attempt, kind=JobKind.FOLLOW_UP, prompt="more")
    do_raise_alert(kind=AlertKind.SECRET_LOOKUP_FAILED, message="lookup failed", attempt=attempt, user=owner)
    return values


def admin_urls(request) -> dict[str, int]:
    """Every page of every registered model, with the status staff get: 403 only where the model admin forbids
    deleting (rows alone would orphan containers, or an audit trail must stay)."""
    urls = {reverse("admin:index"): 200}
    for model, model_admin in admin.site._registry.items():
        meta = model._meta
        urls[reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")] = 200
        urls[reverse("admin:app_list", args=[meta.app_label])] = 200
        for pk in model.objects.values_list("pk", flat=True)[:3]:
            for view in ("change", "history", "delete"):
                try:
                    url = reverse(f"admin:{meta.app_label}_{meta.model_name}_{view}", args=[pk])
                except NoReverseMatch:
                    continue
                allowed = view != "delete" or model_admin.has_delete_permission(request)
                urls[url] = 200 if allowed else 403
    return urls


def test_every_admin_page_renders_without_any_credential(client, settings):
    settings.DOCKER_HOST = "unix:///nonexistent/docker.sock"
    staff = User.objects.create_superuser("root", "root@example.com", "root password 123")
    owner = User.objects.create_user("owner", password="owner password 123")
    values = populate(owner)
    with connection.cursor() as cursor:
        cursor.execute("SELECT value FROM secrets_app_secret")
        raws = [bytes(row[0]) for row in cursor.fetchall()]
    ciphertexts = [form for raw in raws for form in (base64.b64encode(raw)[:40].decode(), raw.hex()[:40])]
    client.force_login(staff)
    request = RequestFactory().get("/admin/")
    request.user = staff
    urls = admin_urls(request)
    assert len(urls) >= 25, urls
    for url, expected in urls.items():
        response = client.get(url)
        assert response.status_code == expected, (url, response.status_code)
        html = response.content.decode()
        for value in values:
            assert value not in html, url
        for form in ciphertexts:
            assert form not in html, url


def test_staff_cannot_schedule_a_function_only_superusers_can(db, client):
    """A schedule runs any importable function in the worker (which controls Docker): staff with every model
    permission still cannot add or change one; a superuser can."""
    from django.contrib.auth.models import Permission, User

    staff = User.objects.create_user("ops", password="ops password 1", is_staff=True)
    staff.user_permissions.set(Permission.objects.filter(content_type__app_label="django_q"))
    client.force_login(staff)
    assert client.get("/admin/django_q/schedule/").status_code == 200  # may look
    assert client.get("/admin/django_q/schedule/add/").status_code == 403
    posted = client.post(
        "/admin/django_q/schedule/add/",
        {"name": "pwn", "func": "os.system", "args": "'id'", "schedule_type": "O", "repeats": "-1"},
    )
    from django_q.models import Schedule

    assert posted.status_code == 403 and not Schedule.objects.filter(name="pwn").exists()
    root = User.objects.create_superuser("root", password="root password 1")
    client.force_login(root)
    assert client.get("/admin/django_q/schedule/add/").status_code == 200


def test_staff_cannot_point_a_task_at_another_host(db, client):
    from django.contrib.auth.models import Permission, User

    from execution.attempts.actions import do_create_task

    owner = User.objects.create_user("own", password="own password 1")
    task = do_create_task(owner=owner, title="t", repo_url="https://github.com/a/b", base_branch="main", prompt="p")
    staff = User.objects.create_user("ops2", password="ops password 1", is_staff=True)
    staff.user_permissions.set(Permission.objects.filter(content_type__app_label="execution"))
    client.force_login(staff)
    client.post(
        f"/admin/execution/task/{task.pk}/change/",
        {"title": "t", "repo_url": "https://evil.example/a/b", "base_branch": "x; rm -rf /"},
    )
    task.refresh_from_db()
    assert (task.repo_url, task.base_branch) == ("https://github.com/a/b.git", "main")


# --- what staff read ---------------------------------------------------------------------------------------


@pytest.fixture
def staff_client(client):
    client.force_login(User.objects.create_superuser("ops", "ops@example.com", "ops password 123"))
    return client


def test_model_names_are_spelled_as_the_product_spells_them(staff_client):
    html = staff_client.get(reverse("admin:index")).content.decode()
    assert "GitHub device flows" in html and "Git hub" not in html
    html = staff_client.get(reverse("admin:secrets_app_githubdeviceflow_changelist")).content.decode()
    assert "Git hub" not in html


def test_runs_on_an_attempt_are_a_record_with_nothing_to_add(staff_client, settings):
    settings.DOCKER_HOST = "unix:///nonexistent/docker.sock"
    owner = User.objects.create_user("runner", password="runner password 123")
    task = do_create_task(owner=owner, title="t", repo_url="https://github.com/acme/a", base_branch="main", prompt="p")
    with held_from_workers():
        attempt = do_start_attempt(task=task)
    Run.objects.create(attempt=attempt, kind=RunKind.CLONE, title="Clone repository", argv=["git"])
    html = staff_client.get(reverse("admin:execution_attempt_change", args=[attempt.pk])).content.decode()
    assert "Clone repository" in html
    # The "Add another Run" link is drawn by the admin's script when the formset may grow: it may not.
    assert 'name="runs-MAX_NUM_FORMS" value="0"' in html and "empty-form" not in html


class FakeEngineInspect:
    containers: dict[str, dict] = {}

    def inspect(self, container_id: str):
        return self.containers.get(container_id)


@pytest.mark.parametrize(
    ("known", "queue", "shown"),
    [
        ({}, "", "c0ffee000000 (removed)"),
        ({"c0ffee0000001234": {"State": {"Status": "running", "Running": True}}}, "", "c0ffee000000 (running)"),
        ({"c0ffee0000001234": {"State": {"Status": "exited", "Running": False}}}, "", "c0ffee000000 (exited)"),
        ({}, "host-b", "c0ffee000000 (on the Docker host of queue host-b; its state is not visible from here)"),
    ],
)
def test_a_container_id_says_whether_the_container_still_exists(staff_client, monkeypatch, known, queue, shown):
    monkeypatch.setattr("execution.admin.DockerEngine", FakeEngineInspect)
    monkeypatch.setattr(FakeEngineInspect, "containers", known)
    owner = User.objects.create_user("boxes", password="boxes password 123")
    task = do_create_task(owner=owner, title="t", repo_url="https://github.com/acme/a", base_branch="main", prompt="p")
    with held_from_workers():
        attempt = do_start_attempt(task=task)
    attempt.__class__.objects.filter(pk=attempt.pk).update(container_id="c0ffee0000001234", queue=queue)
    html = staff_client.get(reverse("admin:execution_attempt_change", args=[attempt.pk])).content.decode()
    assert shown in html


def test_a_container_id_without_an_engine_to_ask_says_so(staff_client, settings):
    settings.DOCKER_HOST = "unix:///nonexistent/docker.sock"
    owner = User.objects.create_user("noengine", password="noengine password 123")
    task = do_create_task(owner=owner, title="t", repo_url="https://github.com/acme/a", base_branch="main", prompt="p")
    with held_from_workers():
        attempt = do_start_attempt(task=task)
    attempt.__class__.objects.filter(pk=attempt.pk).update(container_id="c0ffee0000001234")
    html = staff_client.get(reverse("admin:execution_attempt_change", args=[attempt.pk])).content.decode()
    assert "c0ffee000000 (state unknown: the Docker engine did not answer)" in html
