"""Blocked requests on the attempt page, "allow for this attempt" and the network record an attempt keeps: the
Django side (the real proxy process: tests/execution/runner/test_network_docker.py)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from execution.attempts.actions import do_create_task, do_start_attempt, do_transition
from execution.attempts.selectors import attempt_snapshot
from execution.git.pull_requests import sealed_run_note
from execution.hosts import network
from execution.hosts.egress import do_record_egress_block
from execution.models import AllowanceState, AttemptStatus, NetworkAllowance
from tests.fixtures.queueing import held_from_workers

pytestmark = pytest.mark.django_db


@pytest.fixture
def sealed(settings):
    settings.ANYON_CREDENTIAL_MODE = "sealed"
    settings.ANYON_EGRESS_USER_HOSTS = True
    settings.ANYON_EGRESS_DENY = ["paste.example.com"]
    settings.ANYON_EGRESS_ALLOW_INTERNAL = []
    settings.DOCKER_HOST = "unix:///nonexistent/docker.sock"
    return settings


@pytest.fixture
def attempt(alice):
    task = do_create_task(owner=alice, title="t", repo_url="https://github.com/a/b", base_branch="main", prompt="p")
    with held_from_workers():
        attempt = do_start_attempt(task=task)
    do_transition(attempt=attempt, to=AttemptStatus.PROVISIONING)
    do_transition(attempt=attempt, to=AttemptStatus.RUNNING)
    return attempt


def allow(client, attempt, host: str, port: int | str):
    return client.post(reverse("attempt-allow-host", args=[attempt.pk]), {"host": host, "port": str(port)})


def test_a_refusal_keeps_method_and_path_and_shows_live_with_its_allow_button(sealed, attempt, client, alice):
    do_record_egress_block(
        attempt_id=attempt.pk, host="pypi.org", port=80, reason="is not in the network policy", method="GET",
        path="/simple/\x1b[31mx",
    )  # fmt: skip
    do_record_egress_block(
        attempt_id=attempt.pk, host="pypi.org", port=80, reason="is not in the network policy", method="GET",
        path="/simple/\x1b[31mx",
    )  # fmt: skip
    blocks = attempt_snapshot(attempt)["blocks"]
    assert [(b["host"], b["port"], b["method"], b["path"], b["count"]) for b in blocks] == [
        ("pypi.org", 80, "GET", "/simple/?[31mx", 2)
    ]
    client.force_login(alice)
    page = client.get(reverse("attempt-detail", args=[attempt.pk])).content.decode()
    assert 'data-testid="blocked-line"' in page and "GET /simple/?[31mx" in page
    assert "Allow for this attempt" in page


def test_the_owner_allows_a_host_the_worker_adds_it_on_the_proxy(sealed, attempt, client, alice, monkeypatch):
    client.force_login(alice)
    response = allow(client, attempt, "PyPI.org", 443)
    assert response.status_code == 302
    allowance = NetworkAllowance.objects.get(attempt=attempt)
    assert (allowance.host, allowance.port, allowance.allowed_by, allowance.state) == (
        "pypi.org", 443, alice, AllowanceState.PENDING,
    )  # fmt: skip
    allow(client, attempt, "pypi.org", 443)  # asked twice: one allowance
    assert NetworkAllowance.objects.filter(attempt=attempt).count() == 1

    added = []
    monkeypatch.setattr(network.egress, "allow_for_attempt", lambda attempt_id, rule: added.append((attempt_id, rule)))
    lines = network.apply_pending_allowances(attempt=attempt)
    assert [(a, r.host, r.port) for a, r in added] == [(attempt.pk, "pypi.org", 443)]
    assert lines == ["network: alice allowed pypi.org:443 for this attempt"]
    allowance.refresh_from_db()
    assert allowance.state == AllowanceState.APPLIED and allowance.decided_at is not None
    assert network.apply_pending_allowances(attempt=attempt) == []  # applied once
    # A later session of the attempt (a follow-up, a pull request's push) opens its grant with it.
    policy = network.with_allowances(attempt)
    assert policy.mode == "rules" and [(r.host, r.port) for r in policy.rules] == [("pypi.org", 443)]


@pytest.mark.hostile
@pytest.mark.parametrize(
    ("host", "port", "why"),
    [
        ("paste.example.com", 443, "is denied by the operator"),
        ("127.0.0.1", 9, "a loopback address"),
        ("169.254.169.254", 80, "the cloud metadata address"),
        ("evil.test/x", 443, "Not a host to allow"),
    ],
)
def test_a_host_the_operator_forbids_is_refused_on_the_page(sealed, attempt, client, alice, host, port, why):
    client.force_login(alice)
    response = allow(client, attempt, host, port)
    page = client.get(response["Location"]).content.decode()
    assert why in page
    refused = NetworkAllowance.objects.get(attempt=attempt)  # the audit keeps what was asked, refused
    assert refused.state == AllowanceState.REFUSED and why in refused.detail


def test_an_internal_address_the_operator_lists_may_be_allowed(sealed, attempt, client, alice):
    sealed.ANYON_EGRESS_ALLOW_INTERNAL = ["127.0.0.1:9"]
    client.force_login(alice)
    allow(client, attempt, "127.0.0.1", 9)
    assert NetworkAllowance.objects.get(attempt=attempt).state == AllowanceState.PENDING


def test_without_user_hosts_the_line_names_who_can_and_nothing_is_allowed(sealed, attempt, client, alice):
    sealed.ANYON_EGRESS_USER_HOSTS = False
    do_record_egress_block(attempt_id=attempt.pk, host="pypi.org", port=443, reason="is not in the network policy")
    client.force_login(alice)
    page = client.get(reverse("attempt-detail", args=[attempt.pk])).content.decode()
    assert "Allow for this attempt" not in page and "ask an operator (a staff member)" in page
    page = client.get(allow(client, attempt, "example.org", 443)["Location"]).content.decode()
    assert "example.org is not in a preset, and the operator does not let policies add hosts" in page


@pytest.mark.hostile
def test_another_user_and_staff_cannot_allow_hosts_for_an_attempt(sealed, attempt, client, bob):
    client.force_login(bob)
    assert allow(client, attempt, "pypi.org", 443).status_code == 404
    staff = User.objects.create_user("root", password="root password 123", is_staff=True)
    client.force_login(staff)
    assert client.get(reverse("attempt-detail", args=[attempt.pk])).status_code == 200  # may look
    assert allow(client, attempt, "pypi.org", 443).status_code == 404  # not act
    assert not NetworkAllowance.objects.exists()
    with pytest.raises(PermissionError):
        network.do_allow_host_for_attempt(attempt=attempt, user=staff, host="pypi.org", port=443)


def test_an_ended_attempt_allows_nothing(sealed, attempt, client, alice):
    do_transition(attempt=attempt, to=AttemptStatus.SUCCEEDED)
    client.force_login(alice)
    page = client.get(allow(client, attempt, "pypi.org", 443)["Location"]).content.decode()
    assert "not running any more" in page


def test_the_network_record_of_each_session_adds_up_and_shows_beside_the_diff(sealed, attempt, client, alice):
    first = {
        "hosts": [
            {"host": "api.anthropic.com", "port": 443, "credential": "anthropic", "requests": 3, "tunnels": 0,
             "bytes_in": 5000, "bytes_out": 900, "blocked": 0, "examples": ["POST /v1/messages"]},
            {"host": "pypi.org", "port": 443, "credential": "none", "requests": 0, "tunnels": 2, "bytes_in": 70,
             "bytes_out": 10, "blocked": 0, "examples": ["CONNECT"]},
            {"host": "evil.test", "port": 80, "credential": "none", "requests": 0, "tunnels": 0, "bytes_in": 0,
             "bytes_out": 0, "blocked": 2, "examples": []},
        ],
        "blocked": [{"host": "evil.test", "port": 80, "method": "POST", "path": "/up", "reason": "r", "count": 2}],
    }  # fmt: skip
    second = {
        "hosts": [
            {"host": "github.com", "port": 443, "credential": "github", "requests": 2, "tunnels": 0, "bytes_in": 1,
             "bytes_out": 2, "blocked": 0, "examples": []},
            {"host": "evil.test", "port": 80, "credential": "none", "requests": 0, "tunnels": 0, "bytes_in": 0,
             "bytes_out": 0, "blocked": 1, "examples": []},
        ],
        "blocked": [{"host": "evil.test", "port": 80, "method": "POST", "path": "/up", "reason": "r", "count": 1}],
    }  # fmt: skip
    network.do_record_network_record(attempt=attempt, record=first, phase="attempt")
    network.do_record_network_record(attempt=attempt, record=second, phase="pull request")
    attempt.refresh_from_db()
    record = attempt.network_record
    assert record["phases"] == ["attempt", "pull request"] and "proposals" not in record
    observed = network.merge_records(record, {"hosts": [], "blocked": [], "proposal": {"text": "pypi.org"}}, phase="s")
    assert observed["proposals"] == {"s": {"text": "pypi.org"}}  # observe mode's proposal, per phase
    assert {h["host"]: h["blocked"] for h in record["hosts"]}["evil.test"] == 3
    assert record["blocked"][0]["count"] == 3
    note = sealed_run_note(record)
    assert note == (
        "Made in a sealed run; reached: api.anthropic.com (Anthropic credential added by Anyon), github.com (GitHub "
        "token added by Anyon), pypi.org; blocked: evil.test (3×); no credential entered the container."
    )
    client.force_login(alice)
    page = client.get(reverse("attempt-detail", args=[attempt.pk])).content.decode()
    assert 'data-testid="network-record"' in page and "api.anthropic.com:443" in page and "4.9\xa0KB" in page


def test_the_pages_script_gets_the_answer_as_json(sealed, attempt, client, alice):
    client.force_login(alice)
    url = reverse("attempt-allow-host", args=[attempt.pk])
    refused = client.post(url, {"host": "paste.example.com", "port": "443"}, HTTP_ACCEPT="application/json")
    assert refused.status_code == 400 and "is denied by the operator" in refused.json()["message"]
    allowed = client.post(url, {"host": "pypi.org", "port": "443"}, HTTP_ACCEPT="application/json")
    assert allowed.status_code == 200 and allowed.json()["ok"] is True


@pytest.mark.hostile
def test_a_hostile_request_line_is_shown_as_text(sealed, attempt, client, alice):
    do_record_egress_block(
        attempt_id=attempt.pk, host="evil.test", port=80, reason="is not in the network policy", method="GET",
        path="/<script>alert(1)</script>",
    )  # fmt: skip
    client.force_login(alice)
    page = client.get(reverse("attempt-detail", args=[attempt.pk])).content.decode()
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_add_to_this_repositorys_policy_keeps_the_host_for_later_runs(sealed, attempt, client, alice, bob):
    from execution.models import Environment

    url = reverse("attempt-allow-host", args=[attempt.pk])
    client.force_login(bob)
    assert client.post(url, {"host": "pypi.org", "port": "443", "to": "repository"}).status_code == 404
    client.force_login(alice)
    refused = client.post(
        url, {"host": "paste.example.com", "port": "443", "to": "repository"}, HTTP_ACCEPT="application/json"
    )
    assert refused.status_code == 400 and not Environment.objects.exists()  # nothing saved
    answer = client.post(
        url, {"host": "mirror.example.org", "port": "8443", "to": "repository"}, HTTP_ACCEPT="application/json"
    )
    assert answer.status_code == 200, answer.json()
    environment = Environment.objects.get(owner=alice, repository="a/b")
    assert environment.agent_network_mode == "rules" and environment.agent_network_rules == "mirror.example.org:8443"
    assert NetworkAllowance.objects.get(attempt=attempt).host == "mirror.example.org"  # and this attempt at once
    client.post(url, {"host": "mirror.example.org", "port": "8443", "to": "repository"})
    environment.refresh_from_db()
    assert environment.agent_network_rules == "mirror.example.org:8443"  # once


def test_a_phase_switch_stores_the_phase_record_and_keeps_the_allowed_hosts(sealed, attempt, monkeypatch):
    from execution.runner.sealing import SealedEgress
    from shared.egress import NetworkPolicy

    NetworkAllowance.objects.create(attempt=attempt, host="pypi.org", port=443, state=AllowanceState.APPLIED)
    record = {"hosts": [{"host": "github.com", "port": 443, "credential": "github", "requests": 4, "tunnels": 0,
                         "bytes_in": 9, "bytes_out": 9, "blocked": 0, "examples": []}], "blocked": []}  # fmt: skip
    calls = []
    monkeypatch.setattr(
        network.egress, "fetch_network_record", lambda pk, reset: calls.append(("record", reset)) or record
    )
    monkeypatch.setattr(network.egress, "set_attempt_policy", lambda pk, policy: calls.append(("policy", policy)))
    egress = SealedEgress(attempt, claude_kind=None, directory=sealed.ANYON_TEMP_DIR)
    egress.set_policy(NetworkPolicy(mode="rules", presets=("package-registries",)), ended_phase="clone and setup")
    assert calls[0] == ("record", True)
    sent = calls[1][1]
    assert sent.presets == ("package-registries",) and [(r.host, r.port) for r in sent.rules] == [("pypi.org", 443)]
    attempt.refresh_from_db()
    assert attempt.network_record["phases"] == ["clone and setup"]
