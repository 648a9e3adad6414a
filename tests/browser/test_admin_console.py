"""The attempt's admin page in real Chromium (the admin's own scripts run): no way to add a run by hand."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from execution.attempts.actions import do_create_task, do_start_attempt
from execution.models import Run, RunKind

pytestmark = pytest.mark.browser


def test_the_attempt_page_offers_no_add_another_run(page, asgi_server, transactional_db):
    User.objects.create_superuser("console", "console@example.com", "console password 123")
    owner = User.objects.create_user("someone", password="someone password 123")
    task = do_create_task(owner=owner, title="t", repo_url="https://github.com/acme/a", base_branch="main", prompt="p")
    attempt = do_start_attempt(task=task, enqueue=False)
    Run.objects.create(attempt=attempt, kind=RunKind.CLONE, title="Clone repository", argv=["git"])
    page.goto(f"{asgi_server.url}/admin/login/?next=/admin/execution/attempt/{attempt.pk}/change/")
    page.fill("#id_username", "console")
    page.fill("#id_password", "console password 123")
    page.locator("input[type=submit]").click()
    page.get_by_text("Clone repository").wait_for()
    page.wait_for_load_state("load")  # the inline script has run
    # Django's script draws the link, hidden when the formset may not grow.
    assert not page.get_by_text("Add another Run").is_visible()
    page.goto(f"{asgi_server.url}/admin/")
    assert page.get_by_role("link", name="GitHub device flows").is_visible()
