"""The Django side of the egress proxy: what a refusal leaves behind is bounded, whatever an agent tries."""

from __future__ import annotations

import pytest

from execution.attempts import do_create_task, do_start_attempt
from execution.egress import MAX_BLOCK_ROWS, do_record_egress_block, do_take_unlogged_blocks, grant_for
from execution.models import EgressBlock
from execution.selectors import egress_block_count

pytestmark = [pytest.mark.django_db, pytest.mark.hostile]


@pytest.fixture
def attempt(alice):
    task = do_create_task(owner=alice, title="t", repo_url="https://github.com/a/b", base_branch="main", prompt="p")
    return do_start_attempt(task=task, enqueue=False)


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
