"""Log retention (ANYON_LOG_RETENTION_DAYS): the full log of an old finished attempt goes, a summary stays, and the
page, the admin and a live viewer say so."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
import time_machine
from channels.db import database_sync_to_async
from django.core.management import call_command
from django.utils import timezone

from execution.attempts.actions import AttemptBusy, do_start_follow_up
from execution.attempts.runs import do_record_tool_output
from execution.logs.writer import LogWriter
from execution.models import (
    Attempt,
    AttemptJob,
    AttemptStatus,
    JobKind,
    JobStatus,
    LogRecord,
    Run,
    RunKind,
    RunStatus,
    ToolOutput,
)
from execution.sweeps import log_retention
from execution.sweeps.log_retention import do_drop_attempt_log, sweep_old_logs
from tests.execution.conftest import make_attempt
from tests.fixtures.queueing import held_from_workers

DIFF = [{"path": "README.md", "added": 1, "removed": 0, "binary": False, "patch": "+hello\n", "truncated": False}]


def finished_attempt(username: str, *, days_ago: float = 40) -> tuple[Attempt, dict]:
    """A succeeded attempt that ended ``days_ago`` with a clone and an agent step and a log of every stream, written
    by the real log writer; returns it and what was written (stream -> text)."""
    attempt = make_attempt(username)
    clone = Run.objects.create(attempt=attempt, kind=RunKind.CLONE, title="Clone repository", exit_code=0)
    agent = Run.objects.create(attempt=attempt, kind=RunKind.AGENT, title="Claude Code", exit_code=0)
    Run.objects.filter(attempt=attempt).update(status=RunStatus.SUCCEEDED)
    writer = LogWriter(attempt.pk)
    written: dict[str, str] = {}

    def write(run, stream, text):
        writer.write(run.pk if run else None, stream, text)
        written[stream] = written.get(stream, "") + text

    write(None, "system", "Starting attempt.\n")
    for i in range(1, 31):
        write(clone, "stdout", f"clone line {i}\n")
        if i % 10 == 0:
            write(clone, "stderr", f"remote: counting objects {i}%\n")  # records alternate: many of them
    for i in range(1, 41):
        write(agent, "agent", f"[claude] step {i} café\n")
    do_record_tool_output(run=agent, number=1, text="whole output", chars=12)
    write(agent, "agent", "[done] half a ")  # one line written in two pieces, and the last without a line break
    write(agent, "agent", "line")
    write(None, "system", "Secret directory removed.\n")
    writer.close()
    Attempt.objects.filter(pk=attempt.pk).update(
        status=AttemptStatus.SUCCEEDED,
        finished_at=timezone.now() - timedelta(days=days_ago),
        base_commit="a" * 40,
        head_commit="b" * 40,
        diff=DIFF,
    )
    attempt.refresh_from_db()
    return attempt, written


@pytest.mark.django_db
def test_removing_the_log_keeps_counts_bytes_and_the_last_lines_of_each_step(monkeypatch):
    monkeypatch.setattr(log_retention, "DELETE_BATCH", 3)
    attempt, written = finished_attempt("ret1")
    records = LogRecord.objects.filter(attempt=attempt).count()
    last_seq = LogRecord.objects.filter(attempt=attempt).order_by("-seq").first().seq
    assert records > 6  # the alternating streams made several records: several batches below

    drop = do_drop_attempt_log(attempt=attempt, days=30)

    assert drop.records == records and drop.batches == -(-records // 3)
    assert not LogRecord.objects.filter(attempt=attempt).exists()
    attempt.refresh_from_db()
    assert attempt.log_removed_at is not None
    summary = attempt.log_summary
    assert summary["through_seq"] == last_seq and summary["records"] == records and summary["days"] == 30
    assert summary["streams"] == {
        stream: {"lines": text.count("\n") + (not text.endswith("\n")), "chars": len(text), "bytes": len(text.encode())}
        for stream, text in written.items()
    }
    assert summary["streams"]["agent"]["bytes"] > summary["streams"]["agent"]["chars"]  # é is two bytes
    assert summary["lines"] == 1 + 30 + 3 + 41 + 1
    tails = {tail["title"]: tail for tail in summary["tails"]}
    clone = tails["Clone repository"]
    last_three = ["clone line 29\n", "clone line 30\n", "remote: counting objects 30%\n"]
    assert [line for _, line in clone["lines"]][-3:] == last_three
    assert len(clone["lines"]) == log_retention.TAIL_LINES and clone["lines_before"] == 33 - log_retention.TAIL_LINES
    agent = tails["Claude Code"]["lines"]
    assert agent[-1] == ["agent", "[done] half a line"] and agent[-2] == ["agent", "[claude] step 40 café\n"]
    assert [line for _, line in tails["Anyon"]["lines"]] == ["Starting attempt.\n", "Secret directory removed.\n"]
    # The attempt, its steps and its changes stay.
    assert attempt.runs.count() == 2 and attempt.diff == DIFF and attempt.head_commit == "b" * 40

    assert not ToolOutput.objects.filter(attempt=attempt).exists()  # the whole outputs its lines offered went too

    again = do_drop_attempt_log(attempt=attempt, days=30)  # nothing left to do, nothing changed
    attempt.refresh_from_db()
    assert again.records == 0 and attempt.log_summary == summary


@pytest.mark.django_db
def test_a_working_attempt_keeps_its_log():
    attempt, _ = finished_attempt("ret2")
    AttemptJob.objects.create(attempt=attempt, kind=JobKind.FOLLOW_UP, prompt="more", status=JobStatus.RUNNING)
    with pytest.raises(AttemptBusy):
        do_drop_attempt_log(attempt=attempt, days=30)
    assert LogRecord.objects.filter(attempt=attempt).exists()


@pytest.mark.django_db
def test_the_sweep_removes_only_the_logs_of_attempts_finished_longer_ago_than_the_setting(settings):
    settings.ANYON_LOG_RETENTION_DAYS = 30
    old, _ = finished_attempt("old", days_ago=31)
    recent, _ = finished_attempt("recent", days_ago=29)
    followed_up, _ = finished_attempt("followed", days_ago=60)  # but a follow-up ended yesterday
    AttemptJob.objects.create(
        attempt=followed_up, kind=JobKind.FOLLOW_UP, prompt="p", status=JobStatus.SUCCEEDED,
        finished_at=timezone.now() - timedelta(days=1),
    )  # fmt: skip
    working, _ = finished_attempt("working", days_ago=60)
    AttemptJob.objects.create(attempt=working, kind=JobKind.PULL_REQUEST, status=JobStatus.QUEUED)
    running, _ = finished_attempt("running", days_ago=60)
    Attempt.objects.filter(pk=running.pk).update(status=AttemptStatus.RUNNING)
    kept = {a.pk: LogRecord.objects.filter(attempt=a).count() for a in (recent, followed_up, working, running)}

    seen = []
    dry = sweep_old_logs(dry_run=True, progress=seen.append)
    assert dry.removed == [str(old.pk)] and LogRecord.objects.filter(attempt=old).exists()
    assert "would remove the full log of attempt" in seen[0]

    settings.ANYON_LOG_RETENTION_DAYS = 0  # keep forever
    assert sweep_old_logs().examined == 0 and LogRecord.objects.filter(attempt=old).exists()
    out = StringIO()
    call_command("drop_old_logs", "--days", "0", stdout=out)
    assert "a retention of 0 days keeps logs forever" in out.getvalue()
    assert LogRecord.objects.filter(attempt=old).exists()

    settings.ANYON_LOG_RETENTION_DAYS = 30
    out = StringIO()
    call_command("drop_old_logs", stdout=out)
    assert f"removed the full log of attempt {old.pk}" in out.getvalue()
    assert "old logs: examined 1, removed 1" in out.getvalue()
    assert not LogRecord.objects.filter(attempt=old).exists()
    assert {a: LogRecord.objects.filter(attempt_id=a).count() for a in kept} == kept
    assert Attempt.objects.get(pk=old.pk).log_summary["days"] == 30

    out = StringIO()
    call_command("drop_old_logs", "--days", "20", stdout=out)  # by hand, shorter: the recent one goes too
    assert not LogRecord.objects.filter(attempt=recent).exists()
    assert Attempt.objects.get(pk=recent.pk).log_summary["days"] == 20


@pytest.mark.django_db
def test_an_interrupted_removal_is_finished_by_the_next_sweep_with_the_first_summary(monkeypatch, settings):
    settings.ANYON_LOG_RETENTION_DAYS = 30
    attempt, _ = finished_attempt("crash")
    real_delete = log_retention._delete_through

    def killed_half_way(attempt_id, through_seq):
        LogRecord.objects.filter(attempt_id=attempt_id, seq__lte=2).delete()
        raise RuntimeError("worker killed")

    monkeypatch.setattr(log_retention, "_delete_through", killed_half_way)
    report = sweep_old_logs()
    assert report.failed == [str(attempt.pk)]
    attempt.refresh_from_db()
    first = attempt.log_summary
    assert attempt.log_removed_at and LogRecord.objects.filter(attempt=attempt).exists()

    monkeypatch.setattr(log_retention, "_delete_through", real_delete)
    assert sweep_old_logs().removed == [str(attempt.pk)]
    attempt.refresh_from_db()
    assert not LogRecord.objects.filter(attempt=attempt).exists()
    assert attempt.log_summary == first  # not a summary of what was left after the crash


@pytest.mark.django_db
def test_a_follow_up_after_removal_numbers_on_and_its_log_is_added_to_the_summary(settings):
    attempt, _ = finished_attempt("follow")
    do_drop_attempt_log(attempt=attempt, days=30)
    attempt.refresh_from_db()
    first = attempt.log_summary
    Attempt.objects.filter(pk=attempt.pk).update(workspace_volume="vol")
    attempt.refresh_from_db()
    with held_from_workers():
        job = do_start_follow_up(attempt=attempt, prompt="more")
    agent = Run.objects.create(attempt=attempt, job=job, kind=RunKind.AGENT, title="Follow-up", exit_code=0)
    writer = LogWriter(attempt.pk)
    writer.write(agent.pk, "agent", "[claude] again\n[done]\n")
    writer.close()
    assert list(LogRecord.objects.filter(attempt=attempt).values_list("seq", flat=True)) == [first["through_seq"] + 1]
    AttemptJob.objects.filter(pk=job.pk).update(status=JobStatus.SUCCEEDED, finished_at=timezone.now())

    do_drop_attempt_log(attempt=attempt, days=30)
    attempt.refresh_from_db()
    summary = attempt.log_summary
    assert summary["through_seq"] == first["through_seq"] + 1
    assert summary["lines"] == first["lines"] + 2 and summary["records"] == first["records"] + 1
    assert summary["streams"]["agent"]["lines"] == first["streams"]["agent"]["lines"] + 2
    assert [t["title"] for t in summary["tails"]] == ["Anyon", "Clone repository", "Claude Code", "Follow-up"]


@pytest.mark.django_db
def test_the_page_and_the_admin_say_the_log_was_removed_and_show_the_summary(client, admin_client, settings):
    settings.DOCKER_HOST = "unix:///nonexistent/docker.sock"
    attempt, _ = finished_attempt("pageowner")
    client.force_login(attempt.task.owner)
    before = client.get(f"/attempts/{attempt.pk}/").content.decode()
    assert "clone line 1\n" in before and 'id="log-removed" data-testid="log-removed" hidden' in before

    do_drop_attempt_log(attempt=attempt, days=30)
    page = client.get(f"/attempts/{attempt.pk}/").content.decode()
    assert "The full log was removed 30 days after the attempt finished" in page
    assert "It had 76 lines (system 2, stdout 30, stderr 3, agent 41)" in page
    assert "clone line 30" in page and "clone line 1\n" not in page  # the tail, not the log
    assert "13 earlier lines removed" in page and "[done] half a line" in page
    assert 'data-testid="diff-summary"' in page  # the changes stay

    admin_page = admin_client.get(f"/admin/execution/attempt/{attempt.pk}/change/").content.decode()
    assert "The full log was removed 30 days after the attempt finished" in admin_page
    assert "clone line 30" in admin_page


@pytest.mark.django_db
def test_the_admin_action_removes_the_logs_of_finished_attempts_only(admin_client, settings):
    settings.DOCKER_HOST = "unix:///nonexistent/docker.sock"
    done, _ = finished_attempt("admin1", days_ago=3)
    busy = make_attempt("admin2")
    writer = LogWriter(busy.pk)
    writer.write(None, "system", "queued\n")
    writer.close()
    response = admin_client.post(
        "/admin/execution/attempt/",
        {"action": "drop_logs_selected", "_selected_action": [done.pk, busy.pk]},
        follow=True,
    )
    assert "Removed the full logs of 1 attempt(s); 1 still working." in response.content.decode()
    assert not LogRecord.objects.filter(attempt=done).exists() and LogRecord.objects.filter(attempt=busy).exists()
    assert Attempt.objects.get(pk=done.pk).log_summary["days"] == 3


@pytest.mark.django_db(transaction=True)
async def test_a_live_viewer_of_a_removed_log_gets_the_summary_and_the_end_not_an_error():
    from tests.execution.web.test_consumer import communicator

    attempt, _ = await database_sync_to_async(finished_attempt)("viewer")
    await database_sync_to_async(do_drop_attempt_log)(attempt=attempt, days=30)
    owner = await database_sync_to_async(lambda: attempt.task.owner)()
    for query in ("", "?after=12"):  # a fresh viewer, and one that comes back with its place
        comm = communicator(owner, attempt.pk, query)
        connected, _ = await comm.connect()
        assert connected
        messages = []
        while not messages or messages[-1]["type"] != "end":
            messages.append(json.loads(await comm.receive_from(timeout=10)))
        assert [m["type"] for m in messages] == ["status", "end"]
        assert messages[0]["attempt"]["log_removed"].startswith("The full log was removed 30 days after")
        assert messages[0]["attempt"]["status"] == "succeeded"
        await comm.disconnect()


@pytest.mark.django_db
def test_retention_counts_from_the_instant_an_attempt_ended_across_midnight_at_a_month_end(settings):
    """The cutoff is an instant, not a day of any time zone: a second before it the log stays, after it it goes."""
    settings.ANYON_LOG_RETENTION_DAYS = 30
    settings.TIME_ZONE = "Pacific/Auckland"  # already the 1st of April there
    with time_machine.travel(datetime(2027, 3, 31, 23, 59, 59, tzinfo=UTC), tick=False) as clock:
        past, _ = finished_attempt("past", days_ago=30 + 1 / 86400)
        edge, _ = finished_attempt("edge", days_ago=30 - 1 / 86400)
        assert sweep_old_logs().removed == [str(past.pk)]
        assert LogRecord.objects.filter(attempt=edge).exists()
        clock.shift(timedelta(seconds=2))  # past midnight UTC, into April
        assert sweep_old_logs().removed == [str(edge.pk)]
