"""Log retention in real Chromium with the live log socket connected: a viewer of an attempt whose full log is
removed gets the summary, not an error, and the page says plainly what was removed and what stays."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from playwright.sync_api import expect

from execution.logs.writer import LogWriter
from execution.models import Attempt, AttemptStatus, LogRecord, Run, RunKind, RunStatus
from execution.sweeps.log_retention import do_drop_attempt_log
from tests.browser.test_attempt_page import running_attempt

pytestmark = pytest.mark.browser


def test_a_viewer_sees_the_log_go_and_the_summary_come_live(page, asgi_server, transactional_db):
    attempt = running_attempt(page, asgi_server, "retainer")
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    step = Run.objects.create(attempt=attempt, kind=RunKind.CUSTOM, title="Build", exit_code=1)
    writer = LogWriter(attempt.pk)
    for i in range(1, 101):
        writer.write(step.pk, "stdout", f"build line {i}\n")
    writer.write(step.pk, "stderr", "error: the build failed\n")
    writer.close()
    page.wait_for_function("() => document.getElementById('log').textContent.includes('the build failed')")
    assert "build line 1\n" in page.get_by_test_id("log").inner_text()
    page.evaluate("window.__before_removal = true")

    # The attempt ends (long ago, as far as retention goes) and its log is removed, in one commit for the viewer.
    with transaction.atomic():
        Run.objects.filter(pk=step.pk).update(status=RunStatus.FAILED, finished_at=timezone.now())
        Attempt.objects.filter(pk=attempt.pk).update(
            status=AttemptStatus.FAILED, error="Build failed.", finished_at=timezone.now() - timedelta(days=31)
        )
        do_drop_attempt_log(attempt=Attempt.objects.get(pk=attempt.pk), days=30)
    assert not LogRecord.objects.filter(attempt=attempt).exists()

    # The socket sends the final status with the summary, then the end; the page reloads itself for the results.
    removed = page.get_by_test_id("log-removed")
    expect(removed).to_contain_text("The full log was removed 30 days after the attempt finished", timeout=15_000)
    expect(page.get_by_test_id("live-state")).to_have_text("complete")
    page.wait_for_function("() => window.__before_removal === undefined")  # the reloaded page, from the server
    expect(removed).to_contain_text("It had 101 lines (stdout 100, stderr 1)")
    tail = page.get_by_test_id("log-tail").filter(has_text="error: the build failed")
    expect(tail).to_contain_text("build line 100")
    assert "build line 80\n" not in tail.inner_text()  # only the last 20 lines of the step
    expect(page.get_by_text("Build: the last 20 lines (81 earlier lines removed)")).to_be_visible()
    expect(page.get_by_test_id("log")).to_be_hidden()  # no empty log box under the summary
    assert page.get_by_test_id("attempt-status").get_attribute("data-status") == "failed"
    expect(page.locator("#runs tr")).to_have_count(2)  # the steps stay

    # A new viewer of the removed log: the page as rendered, a socket that ends cleanly, no error anywhere.
    page.goto(f"{asgi_server.url}/attempts/{attempt.pk}/")
    expect(page.get_by_test_id("live-state")).to_have_text("complete")
    expect(page.get_by_test_id("log-removed")).to_contain_text("Kept: the steps, the changes and the last lines")
    assert errors == []
