"""The task form in a real browser: a 1 MB prompt of non-ASCII text arrives whole (multipart, not URL-encoded,
which would triple it past Django's request size limit), its line breaks as typed."""

import re

import pytest
from django.contrib.auth.models import User

from execution.models import Task
from tests.fixtures.browser import login


@pytest.mark.browser
def test_a_one_megabyte_prompt_arrives_whole(page, asgi_server, session_github, transactional_db):
    User.objects.create_user("ida", password="a long enough password")
    login(page, asgi_server.url, "ida", "a long enough password")
    prompt = "é" * 499_000 + "\nfin"
    assert 990_000 < len(prompt.encode()) < 1_000_000
    page.goto(f"{asgi_server.url}/tasks/new/")
    page.fill("#id_title", "Big")
    page.fill("#id_repo_url", f"{session_github.url}/acme/widgets")
    page.fill("#id_prompt", prompt)
    page.get_by_role("button", name="Create task").click()
    page.wait_for_url(re.compile(r".*/tasks/\d+/$"))
    assert Task.objects.get().prompt == prompt  # the browser sent the line break as CRLF: back to what was typed
