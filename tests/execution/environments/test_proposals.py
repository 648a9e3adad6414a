"""Observe mode's proposed setup policy on the environment page: the diff against the current policy (hostile text
escaped), accepting it (bounded by the operator's deny list), editing it (the form pre-filled, nothing saved), the
attempt page's link, and other users and staff kept out."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from execution.attempts.actions import do_create_task, do_start_attempt
from execution.environments.actions import PhaseNetwork, do_save_environment
from execution.environments.proposals import SETUP_PHASE, latest_setup_proposal
from execution.hosts.network import merge_records
from execution.models import Attempt, Environment
from shared.egress.network_policy import propose_policy
from tests.fixtures.queueing import held_from_workers

PAGE = "/environments/acme/widgets/"
ACCEPT = PAGE + "proposal/accept/"


def observed_attempt(owner, used, *, repo_url="https://github.com/Acme/Widgets.git", policy=None) -> Attempt:
    """An attempt whose setup ran in observe mode and used ``used`` ((host, port) pairs), stored as the runner does."""
    task = do_create_task(owner=owner, title="t", repo_url=repo_url, base_branch="main", prompt="p")
    with held_from_workers():
        attempt = do_start_attempt(task=task)
    proposed, text = propose_policy(used)
    proposal = {"policy": policy if policy is not None else proposed.to_json(), "text": text}
    record = merge_records({}, {"hosts": [], "blocked": [], "proposal": proposal}, phase=SETUP_PHASE)
    Attempt.objects.filter(pk=attempt.pk).update(network_record=record)
    attempt.refresh_from_db()
    return attempt


def current_setup(alice, rules: str) -> Environment:
    return do_save_environment(
        owner=alice,
        repository="acme/widgets",
        setup_script="pip install .",
        setup_network=PhaseNetwork(mode="rules", rules=rules),
    )


def test_the_page_shows_the_proposal_as_a_diff_with_its_attempt(alice_client, alice):
    current_setup(alice, "example.org\nfiles.example.net:8443\n")
    observed_attempt(alice, [("old.example", 443)])  # an older proposal: not the one shown
    attempt = observed_attempt(alice, [("pypi.org", 443), ("files.example.net", 8443), ("new.example", 443)])
    html = alice_client.get(PAGE).content.decode()
    assert 'data-testid="proposal"' in html and f"attempt #{attempt.pk}" in html
    assert f'href="/attempts/{attempt.pk}/"' in html
    lines = [line for line in html.split('data-testid="proposal-line">')[1:]]
    shown = [line.split("</span>")[0] for line in lines]
    assert shown == ["+ preset: package-registries", "  files.example.net:8443", "+ new.example", "- example.org"]
    assert not any("old.example" in s for s in shown)


def test_no_proposal_without_an_observed_setup(alice_client, alice, bob):
    observed_attempt(alice, [("pypi.org", 443)], repo_url="https://github.com/acme/other")  # another repository
    observed_attempt(bob, [("pypi.org", 443)])  # another user's
    html = alice_client.get(PAGE).content.decode()
    assert 'data-testid="proposal"' not in html
    assert alice_client.post(ACCEPT, {"attempt": "1"}).status_code == 404
    assert alice_client.get(PAGE + "?edit=proposal").status_code == 404


@pytest.mark.hostile
def test_hostile_host_text_is_escaped_or_left_out(alice_client, alice):
    policy = {
        "mode": "rules",
        "presets": ["<img src=x onerror=alert(1)>"],
        "rules": [
            {"host": "a.example", "port": None, "path_prefix": "/<script>alert(1)</script>", "read_only": False},
            {"host": "<b>bold</b>.example", "port": None, "path_prefix": "", "read_only": False},
            {"host": ["not", "text"], "port": None, "path_prefix": "", "read_only": False},
        ],
        "read_only": False,
    }
    attempt = observed_attempt(alice, [], policy=policy)
    html = alice_client.get(PAGE).content.decode()
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>bold</b>" not in html and "bold" not in html  # not a host name: left out
    assert "<img src=x" not in html and "onerror" not in html  # not a preset: left out
    alice_client.post(ACCEPT, {"attempt": str(attempt.pk)})
    environment = Environment.objects.get(owner=alice)
    assert environment.setup_network_rules == "http://a.example/<script>alert(1)</script>\n"
    assert environment.setup_network_presets == []


def test_accept_makes_the_setup_policy_exactly_the_proposal(alice_client, alice):
    environment = current_setup(alice, "example.org\n")
    Environment.objects.filter(pk=environment.pk).update(setup_network_mode="observe", setup_network_read_only=True)
    attempt = observed_attempt(alice, [("pypi.org", 443), ("files.example.net", 8443), ("127.0.0.1", 8080)])
    response = alice_client.post(ACCEPT, {"attempt": str(attempt.pk)}, follow=True)
    environment.refresh_from_db()
    assert environment.setup_network_mode == "rules" and not environment.setup_network_read_only
    assert environment.setup_network_presets == list(
        latest_setup_proposal(user=alice, repository="acme/widgets").presets
    )
    rules = environment.setup_network_rules.splitlines()
    assert "example.org" not in rules and "files.example.net:8443" in rules and "127.0.0.1:8080" in rules
    assert environment.setup_script == "pip install ."  # the rest of the environment is untouched
    assert "set to the proposal" in response.content.decode()
    # The diff is now empty of changes: every line kept.
    html = response.content.decode()
    assert "diff-add" not in html.split('data-testid="proposal"')[1].split("</section>")[0]


def test_accept_without_an_environment_makes_one(alice_client, alice):
    attempt = observed_attempt(alice, [("files.example.net", 443)])
    alice_client.post(ACCEPT, {"attempt": str(attempt.pk)})
    environment = Environment.objects.get(owner=alice, repository="acme/widgets")
    assert (environment.setup_network_mode, environment.setup_network_rules) == ("rules", "files.example.net\n")
    assert environment.agent_network_mode == "off"


def test_accept_of_an_older_proposal_asks_to_look_again(alice_client, alice):
    older = observed_attempt(alice, [("a.example", 443)])
    observed_attempt(alice, [("b.example", 443)])
    response = alice_client.post(ACCEPT, {"attempt": str(older.pk)}, follow=True)
    assert "A newer proposal arrived" in response.content.decode()
    assert not Environment.objects.exists()


@pytest.mark.hostile
def test_an_entry_the_deny_list_forbids_is_dropped_and_said_so(alice_client, alice, settings):
    settings.ANYON_EGRESS_DENY = ["*.internal.example"]
    attempt = observed_attempt(alice, [("db.internal.example", 5432), ("pypi.example", 443)])
    response = alice_client.post(ACCEPT, {"attempt": str(attempt.pk)}, follow=True)
    environment = Environment.objects.get(owner=alice)
    assert environment.setup_network_rules == "pypi.example\n"
    html = response.content.decode()
    assert "Left out: db.internal.example:5432 is denied by the operator" in html


def test_edit_pre_fills_the_form_and_saves_nothing(alice_client, alice):
    current_setup(alice, "example.org\n")
    observed_attempt(alice, [("files.example.net", 8443)])
    response = alice_client.get(PAGE + "?edit=proposal")
    html = response.content.decode()
    assert response.status_code == 200 and 'data-testid="proposal-editing"' in html
    field = html.split('name="setup_network_rules"')[1].split("</textarea>")[0]
    assert "files.example.net:8443" in field and "example.org" not in field
    assert "pip install ." in html  # the rest of the form is the saved environment
    assert Environment.objects.get(owner=alice).setup_network_rules == "example.org\n"  # nothing saved


def test_the_attempt_page_links_to_the_proposal(alice_client, alice):
    attempt = observed_attempt(alice, [("files.example.net", 443)])
    html = alice_client.get(f"/attempts/{attempt.pk}/").content.decode()
    assert 'data-testid="setup-proposal-link"' in html and 'href="/environments/acme/widgets/#proposal"' in html
    with held_from_workers():
        plain = do_start_attempt(task=attempt.task)  # its setup did not run in observe mode
    assert 'data-testid="setup-proposal-link"' not in alice_client.get(f"/attempts/{plain.pk}/").content.decode()


@pytest.mark.hostile
def test_another_user_and_staff_cannot_see_or_accept_the_proposal(alice, bob):
    attempt = observed_attempt(alice, [("files.example.net", 443)])
    staff = User.objects.create_user("ops", password="ops password 123", is_staff=True, is_superuser=True)
    for user in (bob, staff):
        client = Client()
        client.force_login(user)
        html = client.get(PAGE).content.decode()  # their own page of the same repository
        assert "files.example.net" not in html and 'data-testid="proposal"' not in html
        assert client.post(ACCEPT, {"attempt": str(attempt.pk)}).status_code == 404
        assert client.get(PAGE + "?edit=proposal").status_code == 404
        assert 'data-testid="setup-proposal-link"' not in client.get(f"/attempts/{attempt.pk}/").content.decode()
    assert not Environment.objects.exists()
