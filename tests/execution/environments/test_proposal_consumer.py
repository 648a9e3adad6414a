"""The environment page's live proposal card: pushed to its owner when an observed setup stores a new proposal,
never to another user watching the same repository's page; a signed-out socket is refused."""

from __future__ import annotations

import json

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import AnonymousUser, User

from execution.attempts.actions import do_create_task, do_start_attempt
from execution.environments.proposals import SETUP_PHASE
from execution.hosts.network import do_record_network_record
from shared.egress.network_policy import propose_policy
from tests.fixtures.queueing import held_from_workers
from tests.fixtures.sockets import environment_page_socket as communicator

pytestmark = pytest.mark.django_db(transaction=True)


def observe(owner) -> int:
    task = do_create_task(
        owner=owner, title="t", repo_url="https://github.com/acme/widgets", base_branch="main", prompt="p"
    )
    with held_from_workers():
        attempt = do_start_attempt(task=task)
    proposed, text = propose_policy([("new.example", 443)])
    record = {"hosts": [], "blocked": [], "proposal": {"policy": proposed.to_json(), "text": text}}
    do_record_network_record(attempt=attempt, record=record, phase=SETUP_PHASE)
    return attempt.pk


async def card(comm) -> str:
    """The next proposal card the socket sends (the page's other live sections are skipped)."""
    while True:
        message = json.loads(await comm.receive_from(timeout=10))
        if message["type"] == "proposal":
            return message["html"]


async def drain(comm) -> None:
    """Read what the first sync sends (one message per section) until the socket is quiet."""
    while not await comm.receive_nothing(timeout=1):
        await comm.receive_from()


@pytest.mark.hostile
async def test_the_owner_gets_the_new_proposal_and_another_user_nothing():
    ann = await database_sync_to_async(User.objects.create_user)("ann", password="ann password 123")
    oz = await database_sync_to_async(User.objects.create_user)("oz", password="oz password 123")
    comm, theirs = communicator(ann), communicator(oz)
    assert (await comm.connect())[0] and (await theirs.connect())[0]
    assert 'data-testid="proposal"' not in await card(comm)  # the first sync: no proposal yet
    await card(theirs)
    await drain(theirs)
    attempt_id = await database_sync_to_async(observe)(ann)
    html = await card(comm)
    assert "+ new.example" in html and f"attempt #{attempt_id}" in html
    assert 'value="abcdefabcdefabcdefabcdefabcdefab"' in html  # the accept form still posts
    assert await theirs.receive_nothing(timeout=4)  # nothing of ann's proposal reaches oz
    await comm.disconnect()
    await theirs.disconnect()


async def test_unauthenticated_is_refused():
    connected, code = await communicator(AnonymousUser()).connect()
    assert not connected or code == 4401
