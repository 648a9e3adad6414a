"""GitHub connection against the fake GitHub over real HTTP: PAT validation and the OAuth device flow."""

from datetime import timedelta

import pytest
from django.utils import timezone

from secrets_app import github_client
from secrets_app.errors import ConnectError
from secrets_app.github_connect import (
    FINE_GRAINED_NOTE,
    do_check_github_secret,
    do_connect_pat,
    do_poll_device_flow,
    do_start_device_flow,
)
from secrets_app.models import DeviceFlowStatus, GitHubDeviceFlow, Kind, Secret, SecretState
from secrets_app.secret_store import fetch_secret
from tests.fakes.github import classic_token, expiration_header, fine_grained_token
from tests.fakes.http_server import Reply

# --- PAT ---------------------------------------------------------------------------------------------------


def test_valid_pat_records_login_scopes_and_no_expiry(github, alice):
    token = github.add_token(classic_token(), login="alice-gh", scopes=["repo", "workflow"])
    secret = do_connect_pat(owner=alice, raw_token=f"  {token}\n")
    assert (secret.account_login, secret.scopes, secret.expires_at, secret.kind) == (
        "alice-gh",
        ["repo", "workflow"],
        None,
        Kind.PAT,
    )
    assert fetch_secret(owner=alice, provider="github", purpose="t", actor="t").value == token
    user_call = github.requests_to("/api/user")[-1]
    assert user_call.headers["authorization"] == f"Bearer {token}"
    assert token not in user_call.path and not user_call.query


@pytest.mark.parametrize("offset", ["UTC", "+0000", "-0700", "+0930"])
def test_pat_expiring_header_is_recorded(github, alice, offset):
    """The expiry is the instant GitHub names, whichever zone its header is written in."""
    expires = (timezone.now() + timedelta(days=30)).replace(microsecond=0)
    token = github.add_token(classic_token(), expiration=expiration_header(expires, offset=offset))
    secret = do_connect_pat(owner=alice, raw_token=token)
    assert secret.expires_at == expires


def test_pat_already_expired_is_rejected(github, alice):
    expired = timezone.now() - timedelta(days=3)
    token = github.add_token(classic_token(), expiration=expiration_header(expired, offset="+0000"))
    with pytest.raises(ConnectError, match=f"expired on {expired:%Y-%m-%d}"):
        do_connect_pat(owner=alice, raw_token=token)


def test_pat_expiring_a_minute_ago_in_a_western_zone_is_rejected(github, alice):
    """Written at -0700 the header's calendar date can still be yesterday's or today's: the instant decides."""
    expired = timezone.now() - timedelta(minutes=1)
    token = github.add_token(classic_token(), expiration=expiration_header(expired, offset="-0700"))
    with pytest.raises(ConnectError, match="expired on"):
        do_connect_pat(owner=alice, raw_token=token)


def test_invalid_pat_is_rejected(github, alice):
    with pytest.raises(github_client.InvalidCredential, match="401"):
        do_connect_pat(owner=alice, raw_token=classic_token())
    assert not Secret.objects.exists()


def test_pat_without_repo_scope_is_rejected(github, alice):
    token = github.add_token(classic_token(), scopes=["read:user", "gist"])
    with pytest.raises(ConnectError, match=r"lacks the 'repo' scope \(it has read:user, gist\)"):
        do_connect_pat(owner=alice, raw_token=token)


def test_fine_grained_pat_is_accepted_with_an_explanation(github, alice):
    token = github.add_token(fine_grained_token(), scopes=None)
    secret = do_connect_pat(owner=alice, raw_token=token)
    assert secret.note == FINE_GRAINED_NOTE and secret.scopes == []


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "empty"),
        ("   \t\n", "empty"),
        ("ghp_" + "a" * 10_000, "at most 300"),
        ("ghp_" + "ä" * 36, "other characters"),
        ("ghp_abc def" + "a" * 30, "other characters"),
        ("password123", "does not look like a GitHub token"),
        ("ghp_" + "a" * 10, "does not look like"),
    ],
)
def test_malformed_pat_never_reaches_github(github, alice, raw, message):
    with pytest.raises(ConnectError, match=message):
        do_connect_pat(owner=alice, raw_token=raw)
    assert github.requests == []


def test_github_unreachable_is_a_clear_error(settings, alice):
    settings.ANYON_GITHUB_API_URL = "http://127.0.0.1:9"  # discard port: nothing listens
    with pytest.raises(ConnectError, match="could not be reached"):
        do_connect_pat(owner=alice, raw_token=classic_token())


@pytest.mark.parametrize(
    ("reply", "setting"),
    [
        (Reply(401, "<html>Unauthorized</html>", {"Content-Type": "text/html"}), "ANYON_GITHUB_URL"),
        (Reply(200, ["not", "an", "object"]), "ANYON_GITHUB_URL"),
        (Reply(200, {"error": "unauthorized_client", "error_description": "x"}), "ANYON_GITHUB_CLIENT_ID"),
    ],
)
def test_device_flow_against_the_wrong_server_names_the_setting(github, alice, reply, setting):
    """Not "something that is not JSON (HTTP 401)" alone, but which setting to check."""
    github.replies[("POST", "/login/device/code")] = reply
    with pytest.raises(ConnectError, match=setting) as caught:
        do_start_device_flow(owner=alice, session_key="s")
    if setting == "ANYON_GITHUB_URL":
        assert f"(now {github.url})" in str(caught.value) and "/login/device/code" in str(caught.value)


def test_get_user_answering_other_than_github_names_the_api_setting(github, alice, settings):
    settings.ANYON_GITHUB_API_URL = github.url  # the web address where the API address belongs
    with pytest.raises(ConnectError, match="ANYON_GITHUB_API_URL"):
        do_connect_pat(owner=alice, raw_token=classic_token())


# --- check connection --------------------------------------------------------------------------------------


def test_check_connection_revalidates_and_401_marks_invalid(github, alice):
    token = github.add_token(classic_token(), login="first")
    secret = do_connect_pat(owner=alice, raw_token=token)
    github.accounts[token].login = "renamed"
    assert "@renamed" in do_check_github_secret(secret=secret, actor="alice")
    secret.refresh_from_db()
    assert secret.account_login == "renamed"
    del github.accounts[token]  # revoked on GitHub
    with pytest.raises(github_client.InvalidCredential):
        do_check_github_secret(secret=secret, actor="alice")
    secret.refresh_from_db()
    assert secret.state == SecretState.INVALID


# --- device flow ---------------------------------------------------------------------------------------------


def advance(flow: GitHubDeviceFlow) -> None:
    """Let the flow's interval pass without sleeping."""
    GitHubDeviceFlow.objects.filter(pk=flow.pk).update(next_poll_at=timezone.now())


def start(alice) -> GitHubDeviceFlow:
    return do_start_device_flow(owner=alice, session_key="s1")


def test_device_flow_pending_then_success(github, alice):
    github.device_script = ["pending", "pending", "success"]
    github.device_login = "alice-oauth"
    flow = start(alice)
    assert flow.user_code and flow.verification_uri.startswith(github.url)
    assert flow.device_code not in flow.user_code
    for _ in range(2):
        advance(flow)
        assert do_poll_device_flow(flow_id=flow.pk, owner=alice).status == DeviceFlowStatus.PENDING
    advance(flow)
    done = do_poll_device_flow(flow_id=flow.pk, owner=alice)
    assert done.status == DeviceFlowStatus.SUCCEEDED and "@alice-oauth" in done.message
    secret = Secret.objects.get(owner=alice, kind=Kind.OAUTH_TOKEN)
    assert secret.account_login == "alice-oauth" and "repo" in secret.scopes


def test_device_flow_immediate_success(github, alice):
    github.device_script = ["success"]
    flow = start(alice)
    advance(flow)
    assert do_poll_device_flow(flow_id=flow.pk, owner=alice).status == DeviceFlowStatus.SUCCEEDED


def test_device_flow_interval_is_enforced_by_the_server(github, alice):
    github.device_script = ["pending", "success"]
    flow = start(alice)
    # Polled too early (the interval has not passed): GitHub is not asked.
    assert do_poll_device_flow(flow_id=flow.pk, owner=alice).status == DeviceFlowStatus.PENDING
    assert github.requests_to("/login/oauth/access_token") == []


def test_device_flow_slow_down_widens_interval(github, alice):
    github.device_script = ["slow_down", "success"]
    flow = start(alice)
    advance(flow)
    polled = do_poll_device_flow(flow_id=flow.pk, owner=alice)
    assert polled.status == DeviceFlowStatus.PENDING and polled.interval == 6
    flow.refresh_from_db()
    assert flow.next_poll_at - timezone.now() > timedelta(seconds=5)
    do_poll_device_flow(flow_id=flow.pk, owner=alice)  # too early after slow_down: not sent
    assert len(github.requests_to("/login/oauth/access_token")) == 1
    advance(flow)
    assert do_poll_device_flow(flow_id=flow.pk, owner=alice).status == DeviceFlowStatus.SUCCEEDED


@pytest.mark.parametrize(
    ("step", "status", "message"),
    [
        ("expired", DeviceFlowStatus.EXPIRED, "expired before it was approved"),
        ("denied", DeviceFlowStatus.DENIED, "denied on GitHub"),
    ],
)
def test_device_flow_expired_and_denied(github, alice, step, status, message):
    github.device_script = ["pending", step]
    flow = start(alice)
    advance(flow)
    do_poll_device_flow(flow_id=flow.pk, owner=alice)
    advance(flow)
    done = do_poll_device_flow(flow_id=flow.pk, owner=alice)
    assert done.status == status and message in done.message
    assert not Secret.objects.exists()


def test_device_flow_expires_locally_without_asking(github, alice):
    flow = start(alice)
    GitHubDeviceFlow.objects.filter(pk=flow.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert do_poll_device_flow(flow_id=flow.pk, owner=alice).status == DeviceFlowStatus.EXPIRED
    assert github.requests_to("/login/oauth/access_token") == []


def test_one_flow_per_session_and_device_code_encrypted(github, alice):
    first = start(alice)
    second = start(alice)
    first.refresh_from_db()
    assert first.status == DeviceFlowStatus.CANCELLED and second.status == DeviceFlowStatus.PENDING
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT device_code FROM secrets_app_githubdeviceflow WHERE id = %s", [second.pk])
        raw = bytes(cursor.fetchone()[0])
    assert second.device_code.encode() not in raw


def test_device_flow_not_configured(settings, alice):
    settings.ANYON_GITHUB_CLIENT_ID = ""
    with pytest.raises(ConnectError, match="ANYON_GITHUB_CLIENT_ID"):
        start(alice)
