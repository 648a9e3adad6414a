"""What a push sends, read from ``anyon_git.COMMITS_SCRIPT``'s output (execution/git/commit_list.py): the agent's
author names, e-mails, subjects and branch are hostile text; which commits are Anyon's comes from its own records.
The same output from a real repository is read in test_push_summary_docker.py."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User

from execution.attempts.runs import do_record_results
from execution.git.commit_list import MAX_COMMITS, MAX_FIELD, markdown, notes, parse
from execution.git.pull_requests import pull_request_body
from shared.masking import Masker
from tests.execution.conftest import make_attempt

SECRET = "ghp_" + "S" * 36  # made by the test itself: not a tracked secret
BRANCH = "anyon/attempt-7"


def record(commit_id: str, author="Ann", email="ann@x", committer=None, committer_email=None, subject="work") -> str:
    fields = [commit_id, author, email, committer or author, committer_email or email, subject]
    return "\x1f".join(fields) + "\0"


def output(*records: str, ref: str = f"refs/heads/{BRANCH}", total: int | None = None) -> str:
    return f"{ref}\n{len(records) if total is None else total}\n" + "".join(records)


def summary(out: str, own=(), masker: Masker | None = None) -> dict:
    return parse(out, masker=masker or Masker([SECRET]), branch=BRANCH, head="h" * 40, own_commits=set(own))


@pytest.mark.hostile
def test_hostile_authors_and_a_secret_in_a_message_are_masked_and_made_showable():
    hostile = '<img src=x onerror="alert(1)">\u202egnp.exe'
    out = output(
        record("a" * 40, author=hostile, email="<b>@x", subject=f"leak {SECRET} here\x1b[31m"),
        record("b" * 40, author="Ann", committer="Mallory", committer_email="m@x", subject="x" * 5000),
    )
    found = summary(out)
    first, second = found["commits"]
    assert SECRET not in str(found) and "leak *** here" in first["subject"]
    assert "\x1b" not in first["subject"] and "\u202e" not in first["author"]  # no escapes, no reordering
    assert first["author"].startswith('<img src=x onerror="alert(1)">')  # kept as text: the page escapes it
    assert "committer" not in first  # the same person: said once
    assert (second["committer"], second["committer_email"]) == ("Mallory", "m@x")
    assert len(second["subject"]) == MAX_FIELD + 1 and second["subject"].endswith("…")
    assert found["agent_commits"] == 2 and not found["switched"]
    assert any("The agent's own commits are included: 2 commits" in note for note in notes(found))


@pytest.mark.hostile
def test_a_secret_cut_by_the_length_cap_is_still_masked():
    """Masked before it is cut: a value straddling the cap would otherwise leave its start readable."""
    found = summary(output(record("a" * 40, subject="x" * (MAX_FIELD - 10) + SECRET)))
    assert SECRET[:12] not in found["commits"][0]["subject"]


def test_more_commits_than_the_cap_are_counted_not_listed():
    records = [record(f"{i:040x}") for i in range(MAX_COMMITS + 5)]
    found = summary(output(*records, total=MAX_COMMITS + 5))
    assert len(found["commits"]) == MAX_COMMITS and found["more"] == 5 and found["total"] == MAX_COMMITS + 5
    assert markdown(found).rstrip("`\n").endswith("… and 5 more")


def test_anyons_own_commits_are_known_by_id_not_by_author():
    """An agent commit that copies Anyon's author line is still the agent's; Anyon's commit is its by id."""
    own, forged = "a" * 40, "b" * 40
    found = summary(output(record(own, author="alice"), record(forged, author="alice")), own=[own])
    assert [c["own"] for c in found["commits"]] == [True, False] and found["agent_commits"] == 1
    only_own = summary(output(record(own, author="alice")), own=[own])
    assert only_own["agent_commits"] == 0
    assert any("the agent made no commits of its own" in note for note in notes(only_own))


def test_a_branch_switch_and_a_detached_head_are_said_and_nothing_beyond_the_base():
    switched = summary(output(record("a" * 40), ref="refs/heads/feature/<script>"))
    assert switched["switched"] and switched["agent_branch"] == "feature/<script>"
    said = " ".join(notes(switched))
    assert "switched to the branch feature/<script>" in said and f"hhhhhhhhhhhh to {BRANCH}" in said
    detached = summary(output(ref=""))
    assert detached["detached"] and "left its HEAD detached" in " ".join(notes(detached))
    assert "nothing to push" in " ".join(notes(detached))


def test_output_that_is_not_the_format_gives_nothing_or_skips_the_broken_record():
    assert summary("garbage") == {}
    found = summary(output(record("a" * 40), "not-an-id\x1fx\0", record("b" * 40)[:50], total=3))
    assert [c["id"] for c in found["commits"]] == ["a" * 40]


@pytest.mark.hostile
def test_backticks_in_a_subject_cannot_leave_the_pull_requests_code_block():
    found = summary(output(record("a" * 40, subject="```\n@everyone [x](https://evil)````")))
    text = markdown(found)
    fence = text.split("\n")[-1]
    assert set(fence) == {"`"} and len(fence) == 5  # longer than any run of backticks inside


@pytest.mark.django_db
def test_the_pull_request_body_lists_the_commits_and_the_page_shows_them_escaped(client):
    attempt = make_attempt()
    found = parse(
        output(record("a" * 40, author="<b>Eve</b>", subject=f"add {SECRET}")),
        masker=Masker([SECRET]),
        branch=attempt.branch,
        head="c" * 40,
        own_commits=set(),
    )
    do_record_results(
        attempt=attempt, base_commit="b" * 40, head_commit="c" * 40, diff=[], diff_truncated=False, push_summary=found
    )
    attempt.refresh_from_db()
    body = pull_request_body(attempt)
    assert f"### Commits on {attempt.branch}" in body and "aaaaaaaaaaaa add *** (<b>Eve</b> <ann@x>)" in body
    client.force_login(User.objects.get(username="writer"))
    html = client.get(f"/attempts/{attempt.pk}/").content.decode()
    assert "&lt;b&gt;Eve&lt;/b&gt;" in html and "<b>Eve</b>" not in html and SECRET not in html
    assert "The agent&#x27;s own commits are included: 1 commit not made by Anyon" in html


@pytest.mark.hostile
def test_a_branch_name_cannot_become_a_link_or_a_mention_in_the_pull_request():
    found = summary(output(record("a" * 40), ref="refs/heads/[x](https://evil.test)@org/team"))
    text = markdown(found).split("```")[0]
    assert "[x](https://evil.test)" not in text and not re.search(r"(?<!\\)@org", text)
    assert r"\[x\]\(https\://evil\.test\)\@org/team" in text
