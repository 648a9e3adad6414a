"""The Django side of the egress proxy: what a refusal leaves behind is bounded, whatever an agent tries, and a
flood of requests is a few audited decrypts that still count every request."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async

from execution.attempts.actions import do_create_task, do_start_attempt
from execution.attempts.selectors import egress_block_count
from execution.hosts.egress import (
    MAX_BLOCK_ROWS,
    PLACEHOLDER,
    allow_for_attempt,
    bounds,
    credential_for,
    do_record_egress_block,
    do_take_unlogged_blocks,
    fetch_network_record,
    grant_for,
    record_block,
    record_credential_uses,
    set_attempt_policy,
)
from execution.models import EgressBlock
from secrets_app.models import SecretAccess
from secrets_app.secret_store import do_store_secret
from shared.egress import (
    API_SOCKET,
    PROXY_SOCKET,
    AddressPolicy,
    EgressError,
    EgressProxy,
    Grant,
    Limits,
    NetworkPolicy,
    NetworkRule,
)
from tests.fakes.anthropic_api import FakeAnthropicAPI
from tests.fixtures.queueing import held_from_workers
from tests.shared.egress.conftest import unix_session

pytestmark = [pytest.mark.django_db, pytest.mark.hostile]


@pytest.fixture
def attempt(alice):
    task = do_create_task(owner=alice, title="t", repo_url="https://github.com/a/b", base_branch="main", prompt="p")
    with held_from_workers():
        return do_start_attempt(task=task)


def test_a_repeated_refusal_counts_up_and_is_logged_once(attempt):
    for _ in range(50):
        do_record_egress_block(attempt_id=attempt.pk, host="evil.example", port=443, reason="is not on the allowlist")
    do_record_egress_block(attempt_id=attempt.pk, host="evil.example", port=8443, reason="is not on the allowlist")
    assert EgressBlock.objects.filter(attempt=attempt).count() == 2
    assert egress_block_count(attempt=attempt) == 51
    assert do_take_unlogged_blocks(attempt=attempt) == [
        "blocked: evil.example:443 is not on the allowlist",
        "blocked: evil.example:8443 is not on the allowlist",
    ]
    do_record_egress_block(attempt_id=attempt.pk, host="evil.example", port=443, reason="is not on the allowlist")
    assert do_take_unlogged_blocks(attempt=attempt) == []  # already in the log: only the count moves
    assert egress_block_count(attempt=attempt) == 52


def test_an_agent_trying_thousands_of_hosts_leaves_a_bounded_record(attempt):
    for n in range(MAX_BLOCK_ROWS * 3):
        do_record_egress_block(attempt_id=attempt.pk, host=f"h{n}.example", port=443, reason="is not on the allowlist")
    assert EgressBlock.objects.filter(attempt=attempt).count() == MAX_BLOCK_ROWS + 1
    assert egress_block_count(attempt=attempt) == MAX_BLOCK_ROWS * 3  # the page still counts every refusal
    lines = do_take_unlogged_blocks(attempt=attempt)
    assert len(lines) == MAX_BLOCK_ROWS + 1
    assert lines[-1] == (
        f"blocked: more hosts were refused; only the first {MAX_BLOCK_ROWS} are itemised (the page counts them all)"
    )


def test_the_attempt_page_and_the_admin_count_repeats(attempt, alice, client, admin_client):
    for _ in range(3):
        do_record_egress_block(attempt_id=attempt.pk, host="evil.example", port=443, reason="is not on the allowlist")
    client.force_login(alice)
    page = client.get(f"/attempts/{attempt.pk}/").content.decode()
    assert "refused 3 connections" in page
    listing = admin_client.get("/admin/execution/attempt/").content.decode()
    assert '<td class="field-egress_blocked">3</td>' in listing


def test_the_grant_pushes_only_the_attempts_branch_and_only_in_a_push_window(attempt, settings):
    """Opening the push window (``SealedEgress.pushing``) sets ``git_push``; the branch is fixed by the grant."""
    settings.ANYON_AGENT_GITHUB_API = True
    grant = grant_for(attempt, claude_kind=None)
    assert grant.git_push is False
    assert grant.git_push_branch == attempt.branch == f"anyon/attempt-{attempt.pk}"
    assert grant.github_api_url and grant.github_api_write is False
    settings.ANYON_AGENT_GITHUB_API_WRITE = True
    assert grant_for(attempt, claude_kind=None).github_api_write is True


@pytest.mark.django_db(transaction=True)
async def test_a_burst_through_the_proxy_is_a_few_audited_decrypts_that_count_every_request(alice):
    """The proxy with the real credential source: 30 requests at once, one decrypt row per cache fill, each row
    noting how many requests it served; together they account for every request."""
    token = "sk-ant-api03-" + "Q" * 40
    await sync_to_async(do_store_secret)(owner=alice, provider="claude", kind="api_key", value=token)
    task = await sync_to_async(do_create_task)(
        owner=alice, title="t", repo_url="https://github.com/a/b", base_branch="main", prompt="p"
    )
    with held_from_workers():
        attempt = await sync_to_async(do_start_attempt)(task=task)  # queued: working
    proxy = EgressProxy(
        credential_for, policy=AddressPolicy(own_addresses=[]), limits=Limits(credential_ttl=30),
        on_credential_uses=record_credential_uses,
    )  # fmt: skip
    directory = Path(tempfile.mkdtemp(prefix="egc-", dir="/tmp"))
    with FakeAnthropicAPI(expected_token=token) as api:
        address = api.url.removeprefix("http://")
        grant = Grant(attempt_id=str(attempt.pk), placeholder=PLACEHOLDER, anthropic_url=api.url, internal=[address])
        paths = await proxy.open_attempt(grant, directory)

        async def one() -> int:
            async with (
                unix_session(paths[API_SOCKET]) as client,
                client.post(
                    "http://bridge/v1/messages", headers={"x-api-key": PLACEHOLDER},
                    json={"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]},
                ) as response,
            ):  # fmt: skip
                await response.read()
                return response.status

        assert await asyncio.gather(*(one() for _ in range(30))) == [200] * 30
        await proxy.close_attempt(str(attempt.pk))
        await proxy.stop()
    rows = await sync_to_async(list)(SecretAccess.objects.filter(attempt_id=attempt.pk, provider="claude"))
    assert len(rows) == 1 and rows[0].outcome == "success"  # one decrypt, recorded
    assert rows[0].detail == "served 30 requests"
    assert api.credentials() == {token}


def test_the_grant_keeps_todays_network_unless_given_a_policy(attempt, settings):
    settings.ANYON_EGRESS_ALLOW = ["pypi.org"]
    settings.ANYON_EGRESS_DENY = ["*.evil.example.net"]
    settings.ANYON_EGRESS_USER_HOSTS = False
    assert grant_for(attempt, claude_kind=None).network is None  # only ANYON_EGRESS_ALLOW, by CONNECT
    policy = NetworkPolicy(mode="rules", presets=("package-registries",))
    grant = grant_for(attempt, claude_kind=None, network=policy)
    assert Grant.from_json(grant.to_json()) == grant and grant.network == policy
    assert bounds().allow == {("pypi.org", 443)} and bounds().user_hosts is False
    assert bounds().denied("a.evil.example.net", 443) is not None


@pytest.mark.django_db(transaction=True)
async def test_the_worker_changes_a_running_attempts_policy_and_reads_its_network_record(alice, settings):
    """Through the control socket, as the worker does: a rule the operator denies is refused with the reason, a
    policy replaces the old one, a refusal names its method and path on the attempt, and the record says which
    credential the proxy added to which host."""
    token = "sk-ant-api03-" + "N" * 40
    await sync_to_async(do_store_secret)(owner=alice, provider="claude", kind="api_key", value=token)
    task = await sync_to_async(do_create_task)(
        owner=alice, title="t", repo_url="https://github.com/a/b", base_branch="main", prompt="p"
    )
    with held_from_workers():
        attempt = await sync_to_async(do_start_attempt)(task=task)
    directory = Path(tempfile.mkdtemp(prefix="egn-", dir="/tmp"))
    settings.ANYON_EGRESS_CONTROL = str(directory / "control.sock")
    settings.ANYON_EGRESS_DENY = ["denied.test"]
    proxy = EgressProxy(
        credential_for, policy=AddressPolicy(own_addresses=[]), on_blocked=record_block, bounds=bounds()
    )
    await proxy.start_control(settings.ANYON_EGRESS_CONTROL)
    with FakeAnthropicAPI(expected_token=token) as api:
        settings.ANYON_ANTHROPIC_API_URL = api.url
        settings.ANYON_EGRESS_ALLOW_INTERNAL = [api.url.removeprefix("http://")]
        grant = await sync_to_async(grant_for)(attempt, claude_kind="api_key", network=NetworkPolicy(mode="observe"))
        paths = await proxy.open_attempt(grant, directory)
        async with (
            unix_session(paths[API_SOCKET]) as client,
            client.post(
                "http://bridge/v1/messages", headers={"x-api-key": PLACEHOLDER},
                json={"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]},
            ) as response,
        ):  # fmt: skip
            assert response.status == 200
            answer = await response.read()

        with pytest.raises(EgressError, match=r"denied\.test is denied by the operator"):
            await asyncio.to_thread(allow_for_attempt, attempt.pk, NetworkRule("denied.test"))
        now = await asyncio.to_thread(set_attempt_policy, attempt.pk, NetworkPolicy(mode="rules"))
        assert now == NetworkPolicy(mode="rules")
        reader, writer = await asyncio.open_unix_connection(str(paths[PROXY_SOCKET]))
        writer.write(b"GET http://127.0.0.1:9/steal?x=1 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n")
        head = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert head.startswith(b"HTTP/1.1 403 blocked by Anyon's network policy: host 127.0.0.1 (port 9)")

        record = await asyncio.to_thread(fetch_network_record, attempt.pk)
        await proxy.stop()
    api_host = api.url.removeprefix("http://").rpartition(":")[0]
    uses = {(h["host"], h["credential"]): h for h in record["hosts"]}
    anthropic = uses[(api_host, "anthropic")]
    assert anthropic["requests"] == 1 and anthropic["bytes_in"] >= len(answer) and anthropic["bytes_out"] > 0
    assert anthropic["examples"] == ["POST /v1/messages"]
    assert uses[("127.0.0.1", "none")]["blocked"] == 1
    block = await EgressBlock.objects.aget(attempt=attempt)
    assert (block.host, block.port, block.reason) == ("127.0.0.1", 9, "is not in the network policy")
    assert (block.method, block.path) == ("GET", "/steal")
    assert str(block) == "blocked: 127.0.0.1:9 is not in the network policy (GET /steal)"
