"""The settings websocket pushes server-rendered cards when the user's credentials change, and only theirs."""

import json

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser, User

from secrets_app.consumers import SettingsConsumer
from secrets_app.secret_store import do_revoke_secret, do_store_secret
from tests.fakes.github import classic_token
from tests.fixtures.sockets import signed_in

pytestmark = pytest.mark.django_db(transaction=True)


def communicator(user) -> WebsocketCommunicator:
    comm = WebsocketCommunicator(
        SettingsConsumer.as_asgi(),
        "/ws/settings/",
        headers=[(b"cookie", b"csrftoken=abcdefabcdefabcdefabcdefabcdefab")],
    )
    return signed_in(comm, user)


async def cards(comm) -> dict[str, str]:
    got = {}
    while len(got) < 2:
        message = json.loads(await comm.receive_from(timeout=10))
        assert message["type"] == "card"
        got[message["provider"]] = message["html"]
    return got


async def test_cards_are_pushed_on_change_with_csrf_and_only_to_the_owner():
    ann = await database_sync_to_async(User.objects.create_user)("ann", password="ann password 123")
    other = await database_sync_to_async(User.objects.create_user)("oz", password="oz password 123")
    comm, theirs = communicator(ann), communicator(other)
    assert (await comm.connect())[0] and (await theirs.connect())[0]
    first = await cards(comm)  # initial sync
    await cards(theirs)
    assert 'data-state="not_connected"' in first["github"]
    secret = await database_sync_to_async(do_store_secret)(
        owner=ann, provider="github", kind="pat", value=classic_token(), account_login="ann-gh"
    )
    pushed = await cards(comm)
    assert 'data-state="connected"' in pushed["github"] and "@ann-gh" in pushed["github"]
    assert 'value="abcdefabcdefabcdefabcdefabcdefab"' in pushed["github"]  # forms in pushed cards still post
    await database_sync_to_async(do_revoke_secret)(secret=secret, actor="staff:ops")
    assert 'data-state="not_connected"' in (await cards(comm))["github"]
    assert await theirs.receive_nothing(timeout=2.5)  # nothing about ann's secrets reaches oz
    await comm.send_to(text_data='{"type": "x"}')
    assert json.loads(await comm.receive_from(timeout=10))["type"] == "error"
    await comm.disconnect()
    await theirs.disconnect()


async def test_unauthenticated_is_refused():
    connected, code = await communicator(AnonymousUser()).connect()
    assert not connected and code == 4401


async def test_a_401_to_the_repository_list_turns_the_open_github_card_invalid(github):
    """The token is revoked on GitHub; the task form's list gets 401: the settings page open in another tab shows the
    card "invalid" at once, pushed over its socket."""
    from execution.git.repositories import repositories_for

    ann = await database_sync_to_async(User.objects.create_user)("ann", password="ann password 123")
    token = github.add_token(classic_token(), login="ann-gh")
    await database_sync_to_async(do_store_secret)(
        owner=ann, provider="github", kind="pat", value=token, account_login="ann-gh"
    )
    comm = communicator(ann)
    assert (await comm.connect())[0]
    assert 'data-state="connected"' in (await cards(comm))["github"]
    del github.accounts[token]
    found = await database_sync_to_async(repositories_for)(user=ann, refresh=True)
    assert found.error == "invalid"
    card = (await cards(comm))["github"]
    assert 'data-state="invalid"' in card
    await comm.disconnect()
