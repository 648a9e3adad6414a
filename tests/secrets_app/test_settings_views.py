"""The General Settings page, its actions, the admin, and what must never appear in their HTML."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from secrets_app.models import GitHubDeviceFlow, Kind, Secret, SecretAccess, SecretState
from secrets_app.secret_store import do_store_secret, fetch_secret
from tests.fakes.github import classic_token, expiration_header


def card_state(response) -> str:
    html = response.content.decode()
    marker = 'data-testid="github-card" data-state="'
    return html[html.index(marker) + len(marker) :].split('"', 1)[0]


def test_settings_requires_login(client, db):
    assert client.get("/settings/").status_code == 302


def test_not_connected_card_offers_both_methods(alice_client, github):
    response = alice_client.get("/settings/")
    assert card_state(response) == "not_connected"
    assert b"Sign in with GitHub" in response.content and b"Use a personal access token instead" in response.content
    assert b'data-testid="claude-card" data-state="not_connected"' in response.content


def test_pat_form_connects_and_card_shows_login_scopes(alice_client, github, alice):
    expires = timezone.now() + timedelta(days=365)
    token = github.add_token(classic_token(), login="alice-gh", expiration=expiration_header(expires))
    response = alice_client.post("/settings/github/pat/", {"token": token}, follow=True)
    assert card_state(response) == "connected"
    html = response.content.decode()
    assert "@alice-gh" in html and "read:user, repo" in html and f"{expires:%Y-%m-%d %H:%M}" in html
    assert token not in html and token[-4:] in html


def test_pat_form_error_is_shown_and_token_not_echoed(alice_client, github):
    token = github.add_token(classic_token(), scopes=["gist"])
    response = alice_client.post("/settings/github/pat/", {"token": token})
    assert response.status_code == 400
    html = response.content.decode()
    assert "lacks the &#x27;repo&#x27; scope" in html and token not in html
    huge = alice_client.post("/settings/github/pat/", {"token": "x" * 30_000})
    assert huge.status_code == 400 and b"at most" in huge.content


def test_expiring_soon_shows_notice_on_every_page(alice_client, alice):
    do_store_secret(
        owner=alice, provider="github", kind="pat", value=classic_token(), expires_at=timezone.now() + timedelta(days=3)
    )
    settings_page = alice_client.get("/settings/")
    assert card_state(settings_page) == "expiring"
    home = alice_client.get("/").content.decode()
    assert "Your GitHub credential expires in" in home and "Renew it in Settings" in home


def test_invalid_token_card_says_what_to_do(alice_client, alice, github):
    secret = do_store_secret(owner=alice, provider="github", kind="pat", value=classic_token())
    response = alice_client.post(f"/settings/secrets/{secret.pk}/check/", follow=True)
    assert card_state(response) == "invalid"
    html = response.content.decode()
    assert "GitHub rejected the token (401)" in html
    assert "Runs cannot clone or push until you connect again" in html
    assert "Connect it again in Settings" in html  # the banner on every page


def test_both_kinds_say_pat_wins(alice_client, alice):
    do_store_secret(owner=alice, provider="github", kind="oauth_token", value=classic_token("gho"), account_login="o")
    do_store_secret(owner=alice, provider="github", kind="pat", value=classic_token(), account_login="p")
    html = alice_client.get("/settings/").content.decode()
    assert "Runs use the personal access token when both exist" in html and "@p" in html


def test_disconnect(alice_client, alice):
    secret = do_store_secret(owner=alice, provider="github", kind="pat", value=classic_token())
    response = alice_client.post(f"/settings/secrets/{secret.pk}/revoke/", follow=True)
    assert card_state(response) == "not_connected"
    assert Secret.objects.get(pk=secret.pk).state == SecretState.REVOKED


@pytest.mark.hostile
def test_other_users_objects_are_404(alice_client, bob, github):
    bobs = do_store_secret(owner=bob, provider="github", kind="pat", value=classic_token())
    flow = GitHubDeviceFlow.objects.create(
        owner=bob,
        session_key="bob-session",
        device_code="dc",
        user_code="BOB-CODE",
        verification_uri="https://github.com/login/device",
        expires_at=timezone.now() + timedelta(minutes=5),
        next_poll_at=timezone.now(),
    )
    for url in (
        f"/settings/secrets/{bobs.pk}/check/",
        f"/settings/secrets/{bobs.pk}/revoke/",
        f"/settings/github/device/{flow.pk}/poll/",
        f"/settings/github/device/{flow.pk}/cancel/",
    ):
        assert alice_client.post(url).status_code == 404, url
    assert Secret.objects.get(pk=bobs.pk).state == SecretState.ACTIVE
    assert not SecretAccess.objects.filter(owner=bob).exists()
    assert b"BOB-CODE" not in alice_client.get("/settings/").content
    assert alice_client.get("/settings/cards/nope/").status_code == 404


def test_device_flow_through_the_page(alice_client, github, alice):
    github.device_script = ["pending", "success"]
    response = alice_client.post("/settings/github/device/", follow=True)
    flow = GitHubDeviceFlow.objects.get(owner=alice)
    assert flow.user_code.encode() in response.content and b"Waiting for approval" in response.content
    GitHubDeviceFlow.objects.filter(pk=flow.pk).update(next_poll_at=timezone.now())
    polled = alice_client.post(f"/settings/github/device/{flow.pk}/poll/", headers={"Accept": "application/json"})
    assert polled.json()["status"] == "pending" and polled.json()["retry_in"] > 0
    GitHubDeviceFlow.objects.filter(pk=flow.pk).update(next_poll_at=timezone.now())
    done = alice_client.post(f"/settings/github/device/{flow.pk}/poll/", follow=True)
    assert card_state(done) == "connected" and b"@octocat" in done.content
    assert Secret.objects.filter(owner=alice, kind=Kind.OAUTH_TOKEN, state="active").exists()


def test_device_flow_not_configured_message(alice_client, settings):
    settings.ANYON_GITHUB_CLIENT_ID = ""
    response = alice_client.post("/settings/github/device/", follow=True)
    assert b"ANYON_GITHUB_CLIENT_ID" in response.content


@pytest.fixture
def staff_client(client, db, settings):
    settings.DOCKER_HOST = "unix:///nonexistent/docker.sock"
    staff = User.objects.create_superuser("root", "root@example.com", "root password 123")
    client.force_login(staff)
    return client


@pytest.mark.hostile
def test_admin_pages_never_contain_plaintext_or_ciphertext(staff_client, alice, github):
    values = [classic_token(), classic_token("gho")]
    secrets = [
        do_store_secret(owner=alice, provider="github", kind=kind, value=value)
        for kind, value in zip(["pat", "oauth_token"], values, strict=True)
    ]
    fetch_secret(owner=alice, provider="github", purpose="clone", actor="worker", attempt_id=1)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT value FROM secrets_app_secret")
        ciphertexts = [bytes(row[0]) for row in cursor.fetchall()]
    pages = [
        "/admin/secrets_app/secret/",
        f"/admin/secrets_app/secret/{secrets[0].pk}/change/",
        "/admin/secrets_app/secretaccess/",
        f"/admin/secrets_app/secretaccess/{SecretAccess.objects.first().pk}/change/",
    ]
    for page in pages:
        response = staff_client.get(page)
        assert response.status_code == 200, page
        html = response.content.decode()
        for value in values:
            assert value not in html and value[4:20] not in html, page
        for raw in ciphertexts:
            import base64

            assert base64.b64encode(raw)[:40].decode() not in html and raw.hex()[:40] not in html
    assert b"add" not in staff_client.get("/admin/secrets_app/secret/add/").content[:0]  # add view is forbidden
    assert staff_client.get("/admin/secrets_app/secret/add/").status_code == 403


def test_admin_can_revoke(staff_client, alice):
    secret = do_store_secret(owner=alice, provider="github", kind="pat", value=classic_token())
    response = staff_client.post(
        "/admin/secrets_app/secret/", {"action": "revoke_selected", "_selected_action": [secret.pk]}, follow=True
    )
    assert b"Revoked 1 secret" in response.content
    secret.refresh_from_db()
    assert secret.state == SecretState.REVOKED and "staff:root" in secret.state_reason


def test_the_settings_page_says_where_credentials_go_in_each_mode(alice_client, settings):
    settings.ANYON_CREDENTIAL_MODE = "sealed"
    assert "never\nenter a run's container" in alice_client.get("/settings/").content.decode()
    settings.ANYON_CREDENTIAL_MODE = "mounted"
    assert "given to a run's container only while it needs them" in alice_client.get("/settings/").content.decode()
