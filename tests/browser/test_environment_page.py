"""The environment page in real Chromium: created from the task form's link, a setup secret saved and listed by name
only, a bad entry refused with what was typed kept."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from execution.models import Environment, EnvironmentSecret
from tests.fixtures.browser import login
from tests.fixtures.leaks import track_secret

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
