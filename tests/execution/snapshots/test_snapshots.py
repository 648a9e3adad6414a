"""Snapshots without Docker: the key and the lockfile list, which steps a start from a snapshot runs, which the sweep
drops, the pages (another user's snapshot is not found, staff's page shows only their own) and the admin."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from execution.attempts.actions import do_create_task, do_start_attempt
from execution.attempts.steps import Step
from execution.environments.actions import do_save_environment
from execution.models import RunKind, Snapshot
from execution.runner import cached_start
from execution.runner.setup_phase import SetupPhase
from execution.snapshots.actions import parse_lockfiles, setup_hash, snapshot_key
from execution.sweeps.snapshots import snapshots_to_drop
from execution.web import snapshots as snapshot_views
from tests.fixtures.queueing import held_from_workers

BLOB_A, BLOB_B = "a" * 40, "b" * 40


def make_snapshot(owner, *, repo="https://github.com/acme/widgets.git", size=1000, used_days_ago=0, image_id="i1"):
    now = timezone.now()
    environment = do_save_environment(owner=owner, repository=repo.split("github.com/")[1][:-4], setup_script="make")
    return Snapshot.objects.create(
        owner=owner,
        environment=environment,
        repo_url=repo,
        queue="anyon",
        key="k" * 64,
        setup_hash=setup_hash("make"),
        runtime_image_id="sha256:runtime",
        image=f"anyon-snapshot:{image_id}",
        image_id=f"sha256:{image_id}",
        size_bytes=size,
        created_at=now - timedelta(days=used_days_ago),
        last_used_at=now - timedelta(days=used_days_ago),
    )


def test_lockfiles_are_read_at_any_depth_and_the_key_changes_with_each_part():
    listing = (
        f"100644 blob {BLOB_A}\tpackage-lock.json\n100644 blob {BLOB_B}\tservices/api/requirements-dev.txt\n"
        f"040000 tree {BLOB_A}\tnode_modules\nnoise\n"
    )
    found = parse_lockfiles(listing)
    assert found == [["package-lock.json", BLOB_A], ["services/api/requirements-dev.txt", BLOB_B]]
    base = dict(repo_url="r", setup_hash=setup_hash("make"), runtime_image_id="img", sealed=True, lockfiles=found)
    key = snapshot_key(**base)
    assert snapshot_key(**base) == key
    changed = [
        {**base, "lockfiles": [["package-lock.json", BLOB_B], found[1]]},
        {**base, "setup_hash": setup_hash("make all")},
        {**base, "runtime_image_id": "img2"},
        {**base, "sealed": False},
        {**base, "repo_url": "r2"},
    ]
    assert len({snapshot_key(**fields) for fields in changed} | {key}) == 6


def test_a_start_from_a_snapshot_fetches_instead_of_cloning(alice):
    task = do_create_task(
        owner=alice, title="t", repo_url="https://github.com/acme/widgets", base_branch="dev", prompt="p"
    )
    with held_from_workers():
        attempt = do_start_attempt(task=task)
    steps = [Step.from_plan(item) for item in attempt.plan]
    assert cached_start.plan(steps, attempt=attempt, snapshot=None) == steps
    cached = cached_start.plan(steps, attempt=attempt, snapshot=make_snapshot(alice))
    assert [s.kind for s in cached] == [s.kind for s in steps] and cached[1:] == steps[1:]
    fetch = cached[0]
    assert fetch.kind == RunKind.CLONE and fetch.own and fetch.title == "Fetch base branch"
    assert fetch.argv[-2:] == [task.repo_url, "dev"]


def test_the_setup_fingerprint_is_the_script_and_variables_never_a_secret_value():
    base = SetupPhase(environment_id=1, script="make", variables={"A": "1"}, secrets={"TOKEN": "s3cret-value"})
    assert "s3cret-value" not in cached_start.setup_fingerprint(base)
    assert cached_start.setup_fingerprint(base) == cached_start.setup_fingerprint(
        SetupPhase(environment_id=1, script="make", variables={"A": "1"}, secrets={"TOKEN": "other"})
    )
    assert cached_start.setup_fingerprint(base) != cached_start.setup_fingerprint(
        SetupPhase(environment_id=1, script="make", variables={"A": "2"})
    )


def test_without_a_setup_script_there_is_no_snapshot_to_look_for():
    assert cached_start.candidate(attempt=None, setup=SetupPhase(), engine=None, say=print) is None


def test_the_sweep_drops_old_foreign_image_and_over_cap_snapshots_least_used_first(alice, bob, settings):
    settings.ANYON_SNAPSHOT_MAX_AGE_DAYS = 14
    settings.ANYON_SNAPSHOT_MAX_BYTES_PER_USER = 2500
    settings.ANYON_SNAPSHOT_MAX_BYTES = 0
    old = make_snapshot(alice, used_days_ago=15, image_id="old")
    stale_image = make_snapshot(alice, image_id="stale")
    Snapshot.objects.filter(pk=stale_image.pk).update(runtime_image_id="sha256:previous")
    lru = make_snapshot(alice, used_days_ago=3, image_id="lru")
    mid = make_snapshot(alice, used_days_ago=2, image_id="mid")
    new = make_snapshot(alice, used_days_ago=1, image_id="new")
    bobs = make_snapshot(bob, used_days_ago=5, image_id="bob")
    rows = list(Snapshot.objects.all())
    drop = snapshots_to_drop(rows, now=timezone.now(), runtime_image_id="sha256:runtime")
    assert set(drop) == {old.pk, stale_image.pk, lru.pk}
    assert "14 days" in drop[old.pk][1] and "runtime image" in drop[stale_image.pk][1]
    assert "PER_USER" in drop[lru.pk][1]
    settings.ANYON_SNAPSHOT_MAX_BYTES = 2000  # the host's cap: the least recently used of all users next
    drop = snapshots_to_drop(rows, now=timezone.now(), runtime_image_id="sha256:runtime")
    assert set(drop) == {old.pk, stale_image.pk, lru.pk, bobs.pk}
    assert {mid.pk, new.pk}.isdisjoint(drop)


@pytest.fixture
def no_engine(monkeypatch):
    monkeypatch.setattr(snapshot_views, "engine_if_reachable", lambda: None)


@pytest.mark.hostile
def test_the_snapshot_page_lists_only_ones_own_and_another_users_drop_is_not_found(alice_client, alice, bob, no_engine):
    mine, bobs = make_snapshot(alice, size=5 * 1024**2), make_snapshot(bob, repo="https://github.com/bob/secret.git")
    Snapshot.objects.filter(pk=mine.pk).update(hits=7)
    html = alice_client.get("/snapshots/").content.decode()
    assert "acme/widgets" in html and "5.0\xa0MB" in html and ">7<" in html and "bob/secret" not in html
    assert alice_client.post(f"/snapshots/{bobs.pk}/drop/").status_code == 404
    assert alice_client.get(f"/snapshots/{mine.pk}/drop/").status_code == 405
    staff = Client()
    staff.force_login(User.objects.create_user("staff", password="pw-staff-123456", is_staff=True))
    assert staff.post(f"/snapshots/{mine.pk}/drop/").status_code == 404  # staff drop others' in the admin
    assert Snapshot.objects.count() == 2
    response = alice_client.post(f"/snapshots/{mine.pk}/drop/")
    assert response.status_code == 302 and list(Snapshot.objects.all()) == [bobs]


def test_staff_see_every_snapshot_in_the_admin_and_drop_them_in_bulk(client, alice, bob, monkeypatch):
    from execution import admin as execution_admin

    monkeypatch.setattr(execution_admin, "engine_if_reachable", lambda: None)
    snapshots = [make_snapshot(alice), make_snapshot(bob, image_id="b")]
    admin = User.objects.create_superuser("root", password="pw-root-123456")
    client.force_login(admin)
    html = client.get("/admin/execution/snapshot/").content.decode()
    assert "alice" in html and "bob" in html
    response = client.post(
        "/admin/execution/snapshot/",
        {"action": "drop_selected", "_selected_action": [s.pk for s in snapshots]},
    )
    assert response.status_code == 302 and not Snapshot.objects.exists()


def test_the_attempt_page_says_whether_setup_ran_or_a_snapshot_was_used(alice_client, alice):
    task = do_create_task(
        owner=alice, title="t", repo_url="https://github.com/acme/widgets", base_branch="main", prompt="p"
    )
    with held_from_workers():
        ran = do_start_attempt(task=task)
    type(ran).objects.filter(pk=ran.pk).update(setup_seconds=21.4, snapshot_saved=True)
    html = alice_client.get(f"/attempts/{ran.pk}/").content.decode()
    assert "Setup ran (took 21 s); snapshot saved." in html
    with held_from_workers():
        cached = do_start_attempt(task=task)
    made = timezone.now() - timedelta(days=1)
    type(cached).objects.filter(pk=cached.pk).update(from_snapshot_of=made)
    html = alice_client.get(f"/attempts/{cached.pk}/").content.decode()
    assert (
        f"Started from the snapshot of {timezone.localtime(made):%Y-%m-%d %H:%M}: the setup script did not run." in html
    )
