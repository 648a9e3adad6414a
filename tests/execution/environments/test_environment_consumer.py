"""The environment page's live runs and snapshots: its owner's socket gets the repository's runs as their setup goes
(queued, setup running, setup failed with a link to the attempt, cached start, agent running, finished) and the
snapshots as they are taken, used and dropped elsewhere; another user's socket and a staff account's socket on the
same repository's page get nothing of it. Wake-ups alone carry the changes here (the poll is set to a minute)."""

from __future__ import annotations

import json

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User

from execution.attempts.actions import do_create_task, do_start_attempt, do_transition
from execution.attempts.runs import do_finish_run, do_start_run
from execution.attempts.steps import Step
from execution.models import Attempt, AttemptStatus, RunKind, RunStatus
from execution.snapshots.actions import do_drop_snapshot, do_use_snapshot
from execution.web.environment_consumer import EnvironmentPageConsumer
from tests.execution.snapshots.test_snapshots import make_snapshot
from tests.fixtures.queueing import held_from_workers
from tests.fixtures.sockets import environment_page_socket as communicator

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def wakeups_only(monkeypatch):
    monkeypatch.setattr(EnvironmentPageConsumer, "POLL_SECONDS", 60.0)


async def section(comm, name: str) -> str:
    """The next rendering of section ``name`` the socket sends (the others are skipped)."""
    while True:
        message = json.loads(await comm.receive_from(timeout=10))
        if message["type"] == name:
            return message["html"]


async def first_sync(comm) -> dict[str, str]:
    """The three sections the socket sends at connect."""
    sections = {}
    while len(sections) < 3:
        message = json.loads(await comm.receive_from(timeout=10))
        sections[message["type"]] = message["html"]
    return sections


async def users():
    create = database_sync_to_async(User.objects.create_user)
    ann = await create("ann", password="ann password 123")
    oz = await create("oz", password="oz password 123")
    root = await create("root", password="root password 123", is_staff=True, is_superuser=True)
    return ann, oz, root


def start(owner, repo="https://github.com/acme/widgets") -> Attempt:
    task = do_create_task(owner=owner, title="Widgets", repo_url=repo, base_branch="main", prompt="p")
    with held_from_workers():
        return do_start_attempt(task=task)


def run(attempt: Attempt, kind: str, status: str | None = None):
    step = Step(kind=kind, title=kind, argv=["true"])
    item = do_start_run(attempt=attempt, job=None, step=step, argv=["true"])
    if status is not None:
        do_finish_run(
            run=item, status=status, exit_code=0 if status == RunStatus.SUCCEEDED else 1, error="", session_id=""
        )
    return item


async def test_the_owners_runs_follow_their_setup_and_nobody_else_sees_them():
    ann, oz, root = await users()
    mine, theirs, staff = communicator(ann), communicator(oz), communicator(root)
    for comm in (mine, theirs, staff):
        assert (await comm.connect())[0]
    synced = [await first_sync(comm) for comm in (mine, theirs, staff)]
    assert all('data-testid="no-environment-runs"' in sync["runs"] for sync in synced)

    attempt = await database_sync_to_async(start)(ann)
    html = await section(mine, "runs")
    assert f'data-attempt="{attempt.pk}"' in html and 'data-setup="queued"' in html

    await database_sync_to_async(do_transition)(attempt=attempt, to=AttemptStatus.PROVISIONING)
    assert 'data-setup="waiting"' in await section(mine, "runs")
    setup = await database_sync_to_async(run)(attempt, RunKind.SETUP)
    assert "setup running" in await section(mine, "runs")
    await database_sync_to_async(do_finish_run)(
        run=setup, status=RunStatus.FAILED, exit_code=2, error="", session_id=""
    )
    html = await section(mine, "runs")
    assert 'data-setup="failed"' in html and f'href="/attempts/{attempt.pk}/"' in html and "setup failed" in html
    await database_sync_to_async(do_transition)(attempt=attempt, to=AttemptStatus.FAILED, error="setup failed")
    assert "finished: failed" in await section(mine, "runs")

    second = await database_sync_to_async(start)(ann)
    await section(mine, "runs")
    await database_sync_to_async(do_transition)(attempt=second, to=AttemptStatus.PROVISIONING)
    await database_sync_to_async(do_transition)(attempt=second, to=AttemptStatus.RUNNING)
    await database_sync_to_async(run)(second, RunKind.SETUP, RunStatus.SUCCEEDED)
    await database_sync_to_async(run)(second, RunKind.AGENT)
    while "agent running" not in (html := await section(mine, "runs")):
        pass
    assert 'data-setup="done"' in html

    for comm in (theirs, staff):  # oz's and staff's own pages of acme/widgets: nothing of ann's
        assert await comm.receive_nothing(timeout=2)
    for comm in (mine, theirs, staff):
        await comm.disconnect()


@pytest.mark.hostile
async def test_snapshots_appear_change_and_disappear_for_the_owner_only():
    ann, oz, root = await users()
    await database_sync_to_async(make_snapshot)(oz)  # oz's own snapshot of the same repository
    mine, theirs, staff = communicator(ann), communicator(oz), communicator(root)
    for comm in (mine, theirs, staff):
        assert (await comm.connect())[0]
    synced = [await first_sync(comm) for comm in (mine, theirs, staff)]
    assert 'data-testid="environment-snapshots"' not in synced[0]["snapshots"]  # no environment yet
    assert "data-snapshot=" in synced[1]["snapshots"]  # oz sees only oz's
    assert "data-snapshot=" not in synced[2]["snapshots"]

    snapshot = await database_sync_to_async(make_snapshot)(ann)
    html = await section(mine, "snapshots")
    assert f'data-snapshot="{snapshot.pk}"' in html
    assert 'value="abcdefabcdefabcdefabcdefabcdefab"' in html  # its drop button still posts
    assert 'name="next" value="/environments/acme/widgets/"' in html

    attempt = await database_sync_to_async(start)(ann)
    await database_sync_to_async(do_transition)(attempt=attempt, to=AttemptStatus.PROVISIONING)
    await database_sync_to_async(do_use_snapshot)(snapshot=snapshot, attempt=attempt)
    seen = {}
    while not ("<td>1</td>" in seen.get("snapshots", "") and 'data-setup="cached"' in seen.get("runs", "")):
        message = json.loads(await mine.receive_from(timeout=10))  # one hit; the run says it started cached
        seen[message["type"]] = message["html"]

    await database_sync_to_async(do_drop_snapshot)(snapshot=snapshot, engine=None)  # the admin, the sweep, a tab
    assert f'data-snapshot="{snapshot.pk}"' not in await section(mine, "snapshots")

    for comm in (theirs, staff):
        assert await comm.receive_nothing(timeout=2)
    for comm in (mine, theirs, staff):
        await comm.disconnect()
