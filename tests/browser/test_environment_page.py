"""The environment page in real Chromium: created from the task form's link, a setup secret saved and listed by name
only, a bad entry refused with what was typed kept."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from execution.models import Environment, EnvironmentSecret
from tests.fixtures.browser import login
from tests.fixtures.leaks import track_secret
from tests.fixtures.queueing import held_from_workers

pytestmark = pytest.mark.browser


def test_create_an_environment_and_save_a_setup_secret(page, asgi_server, transactional_db):
    user = User.objects.create_user("envuser", password="envuser password 123")
    value = track_secret("pypi-AgEIcHlwaS5vcmcCJGVudmlyb25tZW50LXRlc3Q")
    login(page, asgi_server.url, user.username, "envuser password 123")
    page.goto(f"{asgi_server.url}/tasks/new/")
    page.get_by_test_id("environments-link").click()
    page.fill("#id_repository", "Acme/Widgets")
    page.get_by_role("button", name="Open").click()
    page.wait_for_url("**/environments/acme/widgets/")
    assert "Not saved yet" in page.content()

    page.fill("#id_setup_script", "pip install -r requirements.txt\n")
    page.fill("#id_variables", "DJANGO_SETTINGS=ci\n2BAD=x\n")
    page.select_option("#id_setup_network_mode", "rules")
    page.check("input[name=setup_network_presets][value=package-registries]")
    page.fill("#id_setup_network_rules", "mirror.example.org\n")
    page.get_by_test_id("environment-save").click()
    error = page.get_by_test_id("error-variables")
    assert "Line 2" in error.inner_text() and "not a variable name" in error.inner_text()
    assert page.input_value("#id_setup_script") == "pip install -r requirements.txt\n"  # what was typed stays
    assert page.input_value("#id_setup_network_rules") == "mirror.example.org\n"
    assert page.is_checked("input[name=setup_network_presets][value=package-registries]")
    assert not Environment.objects.exists()

    page.fill("#id_variables", "DJANGO_SETTINGS=ci\n")
    page.get_by_test_id("environment-save").click()
    page.wait_for_selector("text=Environment for acme/widgets saved.")
    environment = Environment.objects.get(owner=user)
    assert environment.variables == {"DJANGO_SETTINGS": "ci"} and environment.setup_network_mode == "rules"

    page.fill("#id_name", "PIP_INDEX_TOKEN")
    page.fill("#id_value", value)
    page.get_by_test_id("setup-secret-save").click()
    page.wait_for_selector("text=Setup secret PIP_INDEX_TOKEN saved.")
    row = page.get_by_test_id("setup-secret")
    assert "PIP_INDEX_TOKEN" in row.inner_text() and "set on" in row.inner_text()
    assert value not in page.content() and page.input_value("#id_value") == ""
    assert EnvironmentSecret.objects.filter(environment=environment, name="PIP_INDEX_TOKEN").exists()

    page.goto(f"{asgi_server.url}/environments/")
    assert "acme/widgets" in page.get_by_test_id("environment-list").inner_text()
    assert value not in page.content()


def test_a_proposed_setup_policy_is_shown_live_as_a_diff_and_accepted(page, asgi_server, transactional_db):
    """Observe mode's proposal arrives while the user types in the form: the card shows it (the typed text stays),
    as a diff against the current setup policy; accepting makes it the setup policy."""
    from execution.attempts.actions import do_create_task, do_start_attempt
    from execution.environments.actions import PhaseNetwork, do_save_environment
    from execution.environments.proposals import SETUP_PHASE
    from execution.hosts.network import do_record_network_record
    from shared.egress.network_policy import propose_policy

    user = User.objects.create_user("learner", password="learner password 123")
    do_save_environment(
        owner=user,
        repository="acme/widgets",
        setup_script="pip install .\n",
        setup_network=PhaseNetwork(mode="rules", rules="example.org\nfiles.example.net:8443\n"),
    )
    login(page, asgi_server.url, user.username, "learner password 123")
    page.goto(f"{asgi_server.url}/environments/acme/widgets/")
    assert page.get_by_test_id("proposal").count() == 0
    page.fill("#id_setup_script", "pip install .\nmake deps  # typed, not saved\n")

    task = do_create_task(
        owner=user, title="t", repo_url="https://github.com/acme/widgets", base_branch="main", prompt="p"
    )
    with held_from_workers():
        attempt = do_start_attempt(task=task)
    proposed, text = propose_policy([("files.example.net", 8443), ("new.example", 443)])
    record = {"hosts": [], "blocked": [], "proposal": {"policy": proposed.to_json(), "text": text}}
    do_record_network_record(attempt=attempt, record=record, phase=SETUP_PHASE)

    page.get_by_test_id("proposal").wait_for(timeout=15000)
    lines = page.get_by_test_id("proposal-line").all_inner_texts()
    assert lines == ["  files.example.net:8443", "+ new.example", "- example.org"], lines
    assert f"attempt #{attempt.pk}" in page.get_by_test_id("proposal").inner_text()
    assert page.input_value("#id_setup_script") == "pip install .\nmake deps  # typed, not saved\n"

    page.get_by_test_id("proposal-accept").click()
    page.wait_for_selector("text=set to the proposal")
    environment = Environment.objects.get(owner=user)
    assert environment.setup_network_rules == "files.example.net:8443\nnew.example\n"
    assert page.get_by_test_id("proposal-line").all_inner_texts() == ["  files.example.net:8443", "  new.example"]
    assert page.input_value("#id_setup_network_rules") == "files.example.net:8443\nnew.example\n"
