"""Environment pages: save and show, form errors that keep the input, setup secrets never shown back, and other
users and staff kept out (404, no value)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from execution.environments.actions import PhaseNetwork, do_save_environment, do_set_setup_secret
from execution.models import Environment, EnvironmentSecret
from secrets_app.models import AccessOutcome, Kind, Provider, Secret, SecretAccess, SecretState
from secrets_app.secret_store import fetch_secret_by_id
from tests.fixtures.leaks import track_secret

PAGE = "/environments/acme/widgets/"


def form_data(**overrides) -> dict:
    data = {
        "setup_script": "pip install -r requirements.txt\n",
        "maintenance_script": "",
        "variables": "NODE_ENV=test\nGREETING=hello world\n",
        "setup_network_mode": "rules",
        "setup_network_presets": ["package-registries"],
        "setup_network_rules": "example.org\nhttp://mirror.example.com:8443/simple read-only\n*.pythonhosted.org\n",
        "agent_network_mode": "off",
        "agent_network_rules": "",
    }
    return data | overrides


@pytest.fixture
def secret_value() -> str:
    return track_secret("s3tup-secret-value-71f9c2")


def test_save_and_show_an_environment(alice_client, alice):
    response = alice_client.post(PAGE, form_data())
    assert response.status_code == 302 and response["Location"] == PAGE
    environment = Environment.objects.get(owner=alice)
    assert environment.repository == "acme/widgets"
    assert environment.variables == {"NODE_ENV": "test", "GREETING": "hello world"}
    assert environment.setup_network_presets == ["package-registries"]
    html = alice_client.get(PAGE).content.decode()
    assert "pip install -r requirements.txt" in html and "GREETING=hello world" in html
    listing = alice_client.get("/environments/").content.decode()
    assert 'href="/environments/acme/widgets/"' in listing


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("variables", "1BAD=x\n", "is not a variable name"),
        ("variables", "HTTPS_PROXY=http://evil\n", "is set by Anyon itself"),
        ("variables", "JUST_A_NAME\n", "Line 1: write NAME=value"),
        ("setup_network_rules", "ok.example.org\nnot a host!\n", "line 2"),
        ("agent_network_rules", "example.org extra words\n", "line 1"),
        ("agent_network_rules", "ftp://example.org/\n", "line 1"),
        ("setup_script", "x" * (64 * 1024 + 1), "the limit is 65536"),
    ],
)
def test_form_errors_name_the_problem_and_keep_the_input(alice_client, field, value, message):
    response = alice_client.post(PAGE, form_data(**{field: value}))
    assert response.status_code == 400
    html = response.content.decode()
    assert f'data-testid="error-{field}"' in html and message in html
    assert "pip install -r requirements.txt" in html or field == "setup_script"  # what was typed stays
    assert "GREETING=hello world" in html or field == "variables"
    assert not Environment.objects.exists()


def test_agent_phase_cannot_observe(alice_client):
    response = alice_client.post(PAGE, form_data(agent_network_mode="observe"))
    assert response.status_code == 400 and 'data-testid="error-agent_network_mode"' in response.content.decode()


def test_a_setup_secret_is_stored_encrypted_listed_by_name_and_never_shown(alice_client, alice, secret_value):
    response = alice_client.post(PAGE + "secrets/", {"name": "PIP_TOKEN", "value": secret_value})
    assert response.status_code == 302
    item = EnvironmentSecret.objects.get(environment__owner=alice)
    secret = Secret.objects.defer("value").get(pk=item.secret_id)
    assert (secret.provider, secret.kind, secret.state) == (Provider.ENVIRONMENT, Kind.SETUP_SECRET, "active")
    html = alice_client.get(PAGE).content.decode()
    assert "PIP_TOKEN" in html and "set on" in html and secret_value not in html
    # Replacing it revokes the old value (its ciphertext dropped); the name stays one row.
    alice_client.post(PAGE + "secrets/", {"name": "PIP_TOKEN", "value": track_secret("an0ther-value-0123")})
    assert EnvironmentSecret.objects.count() == 1
    assert Secret.objects.get(pk=secret.pk).state == SecretState.REVOKED
    # Deleting forgets it.
    item = EnvironmentSecret.objects.get()
    alice_client.post(f"{PAGE}secrets/{item.pk}/delete/")
    assert not EnvironmentSecret.objects.exists()
    assert not Secret.objects.filter(provider=Provider.ENVIRONMENT, state=SecretState.ACTIVE).exists()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [("bad name", "long enough value", "is not a variable name"), ("SHORT", "abc", "at least 8 characters")],
)
def test_setup_secret_errors_keep_the_name_but_never_the_value(alice_client, name, value, message):
    response = alice_client.post(PAGE + "secrets/", {"name": name, "value": value})
    html = response.content.decode()
    assert response.status_code == 400 and message in html
    assert f'value="{name}"' in html
    assert 'name="value"' in html and f'value="{value}"' not in html
    assert not EnvironmentSecret.objects.exists()


@pytest.mark.hostile
def test_another_user_cannot_see_or_change_an_environment(alice, bob, secret_value):
    environment = do_save_environment(
        owner=alice,
        repository="acme/widgets",
        setup_script="echo alice-only-script",
        variables={"ALICE_VAR": "alice-only"},
        setup_network=PhaseNetwork(),
    )
    item = do_set_setup_secret(environment=environment, name="TOKEN", value=secret_value)
    client = Client()
    client.force_login(bob)
    html = client.get(PAGE).content.decode()  # bob's own (empty) page of the same repository
    assert "alice-only" not in html and "TOKEN" not in html
    assert client.post(f"{PAGE}secrets/{item.pk}/delete/").status_code == 404
    assert client.post(f"{PAGE}delete/").status_code == 404
    assert "acme/widgets" not in client.get("/environments/").content.decode()
    client.post(PAGE, form_data(setup_script="echo bob"))  # bob saves his own: alice's is untouched
    environment.refresh_from_db()
    assert environment.setup_script == "echo alice-only-script" and EnvironmentSecret.objects.filter(pk=item.pk)


@pytest.mark.hostile
def test_staff_cannot_read_a_setup_secret(alice, secret_value, settings):
    settings.DOCKER_HOST = "unix:///nonexistent/docker.sock"
    environment = do_save_environment(owner=alice, repository="acme/widgets", setup_script="true")
    item = do_set_setup_secret(environment=environment, name="TOKEN", value=secret_value)
    staff = User.objects.create_user("ops", password="ops password 123", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(staff)
    pages = [
        PAGE,
        "/environments/",
        "/admin/secrets_app/secret/",
        f"/admin/secrets_app/secret/{item.secret_id}/change/",
        "/admin/secrets_app/secretaccess/",
    ]
    for page in pages:
        response = client.get(page)
        assert response.status_code in (200, 302), page
        assert secret_value not in response.content.decode(), page
        assert secret_value[-4:] not in response.content.decode(), page  # not even its end


def test_the_runner_decrypt_is_audited(alice, secret_value):
    environment = do_save_environment(owner=alice, repository="acme/widgets", setup_script="true")
    item = do_set_setup_secret(environment=environment, name="TOKEN", value=secret_value)
    fetched = fetch_secret_by_id(owner=alice, secret_id=item.secret_id, purpose="setup", actor="worker:t", attempt_id=7)
    assert fetched.value == secret_value and secret_value not in repr(fetched)
    access = SecretAccess.objects.get()
    assert (access.outcome, access.attempt_id, access.secret_id) == (AccessOutcome.SUCCESS, 7, item.secret_id)


def test_task_and_form_pages_link_to_the_environment(alice_client, alice):
    from execution.attempts.actions import do_create_task

    task = do_create_task(
        owner=alice, title="t", repo_url="https://github.com/Acme/Widgets.git", base_branch="main", prompt="p"
    )
    html = alice_client.get(f"/tasks/{task.pk}/").content.decode()
    assert 'href="/environments/acme/widgets/"' in html and "Environment for acme/widgets" in html
    assert 'href="/environments/"' in alice_client.get("/tasks/new/").content.decode()


@pytest.mark.hostile
def test_an_entry_the_operator_denies_is_refused_when_saved(alice_client, settings):
    settings.ANYON_EGRESS_DENY = ["paste.example.com"]
    response = alice_client.post(PAGE, form_data(agent_network_mode="rules", agent_network_rules="paste.example.com\n"))
    html = response.content.decode()
    assert response.status_code == 400 and "denied by the operator" in html
    assert "paste.example.com" in html and not Environment.objects.exists()
