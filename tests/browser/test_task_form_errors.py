"""Every error of the task form in real Chromium: each shows its message by its field, and what the user typed
is still there to correct (the page has no live socket: nothing else can change it)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from execution.models import Task
from tests.fixtures.browser import login

pytestmark = pytest.mark.browser

CASES = {
    "another host": ("repo_url", "{scheme}://evil.example/acme/widgets", "Only repositories on"),
    "git remote helper": ("repo_url", "ext::sh -c id", "Only http URLs of"),
    "option injection": ("repo_url", "--upload-pack=id", "cannot start with '-'"),
    "credentials in the URL": ("repo_url", "{scheme}://user:pw@{host}/acme/widgets", "Do not put credentials"),
    "not owner/repo": ("repo_url", "{scheme}://{host}/acme", "Use the form"),
    "query": ("repo_url", "{scheme}://{host}/acme/widgets?x=1", "must not have a query"),
    "blank URL": ("repo_url", "   ", "Enter the repository URL"),
    "bad branch": ("base_branch", "../main", "Use a plain branch name"),
    "blank prompt": ("prompt", "  \n  ", "Write what Claude should do."),
}


@pytest.mark.parametrize("case", CASES)
def test_task_form_errors_are_shown_by_their_field_with_the_input_kept(
    page, asgi_server, session_github, transactional_db, case
):
    from urllib.parse import urlsplit

    field, value, message = CASES[case]
    where = urlsplit(session_github.url)
    value = value.format(scheme=where.scheme, host=where.netloc)
    name = f"former{list(CASES).index(case)}"
    User.objects.create_user(name, password=f"{name} password 123")
    login(page, asgi_server.url, name, f"{name} password 123")
    page.goto(f"{asgi_server.url}/tasks/new/")
    typed = {
        "title": "Fix the README",
        "repo_url": f"{session_github.url}/acme/widgets",
        "base_branch": "main",
        "prompt": "Fix the typo\nin the README",
    }
    typed[field] = value
    for name_, text in typed.items():
        page.fill(f"#id_{name_}", text)
    page.get_by_role("button", name="Create task").click()
    error = page.get_by_test_id(f"error-{field}")
    error.wait_for()
    assert message in error.inner_text(), error.inner_text()
    assert page.locator('[role="alert"]').count() == 1  # only the field that is wrong
    for name_, text in typed.items():
        kept = page.input_value(f"#id_{name_}")
        assert kept.replace("\r\n", "\n") == text or kept.strip() == text.strip(), (name_, kept)
    assert not Task.objects.exists()


def test_required_fields_are_asked_for_before_anything_is_sent(page, asgi_server, session_github, transactional_db):
    User.objects.create_user("hasty", password="hasty password 123")
    login(page, asgi_server.url, "hasty", "hasty password 123")
    page.goto(f"{asgi_server.url}/tasks/new/")
    page.fill("#id_repo_url", f"{session_github.url}/acme/widgets")
    page.get_by_role("button", name="Create task").click()
    assert page.evaluate("document.querySelector('#id_title').validity.valueMissing")
    assert page.evaluate("document.querySelector('#id_prompt').validity.valueMissing")
    assert page.url.endswith("/tasks/new/") and not Task.objects.exists()
