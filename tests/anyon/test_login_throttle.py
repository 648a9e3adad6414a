"""Repeated failed sign-ins lock out the account (from any address) and the address (for any account), on /login/
and on /admin/login/, with the settings' defaults; the right password does not get through a lockout; the cool-off
and `axes_reset_*` lift it; the page that says so is the plain sign-in page, also under ASGI."""

import os
import subprocess
import sys
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import AsyncClient, Client

from tests.fixtures.processes import ROOT

pytestmark = pytest.mark.hostile  # attacks: counted in docs/QA_CHECKLIST.md

PASSWORD = "correct horse battery"
LOCKED = b"Too many failed sign-ins"


@pytest.fixture(autouse=True)
def _no_engine(settings):
    settings.DOCKER_HOST = "unix:///nonexistent/docker.sock"  # no engine ping per page


def sign_in(username, password, *, address="127.0.0.1", path="/login/", **headers):
    client = Client(REMOTE_ADDR=address, **headers)
    response = client.post(path, {"username": username, "password": password})
    return client, response


def signed_in(client) -> bool:
    return "_auth_user_id" in client.session


def fail(username, times, *, address="127.0.0.1", path="/login/", **headers):
    for _ in range(times):
        _, response = sign_in(username, "wrong password", address=address, path=path, **headers)
    return response


def test_the_defaults_are_five_failures_and_fifteen_minutes(settings):
    # tests/settings.py does not change them: every test here runs against what production gets.
    assert settings.AXES_FAILURE_LIMIT == 5 and settings.AXES_COOLOFF_TIME.total_seconds() == 15 * 60


@pytest.mark.django_db
def test_per_account_lockout_from_many_addresses_refuses_the_right_password():
    ada = User.objects.create_user("ada", password=PASSWORD)
    User.objects.create_user("bob", password=PASSWORD)
    for i in range(4):  # below the limit: ordinary failures
        _, response = sign_in("ada", "wrong password", address=f"203.0.113.{i + 1}")
        assert response.status_code == 200 and b"didn't match" in response.content
    client, ok = sign_in("ada", PASSWORD, address="203.0.113.40")
    assert ok.status_code == 302 and signed_in(client)  # 4 failures do not lock
    locking = fail("ada", 1, address="203.0.113.5")  # the 5th failure, from yet another address
    assert locking.status_code == 429 and LOCKED in locking.content
    client, refused = sign_in("ada", PASSWORD, address="198.51.100.7")  # right password, fresh address
    assert refused.status_code == 429 and not signed_in(client)
    assert LOCKED in refused.content and b"Traceback" not in refused.content
    assert b'name="username"' in refused.content  # the sign-in page itself, server-rendered
    # Another account from another address is not affected by ada's lockout.
    client, bob = sign_in("bob", PASSWORD, address="198.51.100.8")
    assert bob.status_code == 302 and signed_in(client)
    assert ada.is_active  # the account itself is untouched


@pytest.mark.django_db
def test_per_address_lockout_covers_every_account_from_that_address():
    User.objects.create_user("bob", password=PASSWORD)
    for name in ("root", "admin", "nobody", "eve", "mallory"):  # accounts that exist or not: counted alike
        fail(name, 1, address="192.0.2.66")
    client, refused = sign_in("bob", PASSWORD, address="192.0.2.66")
    assert refused.status_code == 429 and LOCKED in refused.content and not signed_in(client)
    client, ok = sign_in("bob", PASSWORD, address="192.0.2.67")  # bob from his own address is fine
    assert ok.status_code == 302 and signed_in(client)


@pytest.mark.django_db
def test_admin_login_of_a_staff_account_is_locked_with_a_page_not_an_error():
    User.objects.create_superuser("admin", "admin@localhost", PASSWORD)
    for i in range(5):
        response = fail("admin", 1, address=f"203.0.113.{100 + i}", path="/admin/login/?next=/admin/")
    assert response.status_code == 429 and LOCKED in response.content
    client, refused = sign_in("admin", PASSWORD, address="198.51.100.1", path="/admin/login/?next=/admin/")
    assert refused.status_code == 429 and LOCKED in refused.content and not signed_in(client)
    assert b'name="next" value="/admin/"' in refused.content
    assert client.get("/admin/").status_code == 302  # still not signed in
    # Failures on the admin form and the site form count together: the site form refuses admin too.
    assert sign_in("admin", PASSWORD, address="198.51.100.2")[1].status_code == 429


@pytest.mark.django_db
def test_a_locked_account_gets_in_again_after_the_cool_off():
    User.objects.create_user("ada", password=PASSWORD)
    fail("ada", 5, address="203.0.113.9")
    assert sign_in("ada", PASSWORD, address="198.51.100.3")[1].status_code == 429
    # Tries during the lockout are not counted, so the cool-off runs from the last counted failure.
    assert AccessAttempt.objects.get(username="ada").failures_since_start == 5
    last_failure = AccessAttempt.objects.get().attempt_time
    AccessAttempt.objects.update(attempt_time=last_failure - timedelta(minutes=14))
    assert sign_in("ada", PASSWORD, address="198.51.100.3")[1].status_code == 429  # 14 minutes on: still locked
    AccessAttempt.objects.update(attempt_time=last_failure - timedelta(minutes=15, seconds=1))
    client, ok = sign_in("ada", PASSWORD, address="198.51.100.3")
    assert ok.status_code == 302 and signed_in(client)


@pytest.mark.django_db
def test_the_runbook_commands_unlock_an_account_and_an_address():
    User.objects.create_user("ada", password=PASSWORD)
    User.objects.create_user("bob", password=PASSWORD)
    fail("ada", 5, address="203.0.113.10")
    fail("someone", 5, address="192.0.2.10")
    assert sign_in("ada", PASSWORD, address="198.51.100.4")[1].status_code == 429
    call_command("axes_reset_username", "ada")
    assert sign_in("ada", PASSWORD, address="198.51.100.4")[1].status_code == 302
    assert sign_in("bob", PASSWORD, address="192.0.2.10")[1].status_code == 429
    call_command("axes_reset_ip", "192.0.2.10")
    assert sign_in("bob", PASSWORD, address="192.0.2.10")[1].status_code == 302


@pytest.mark.django_db
def test_behind_a_proxy_the_configured_header_names_the_client(settings):
    settings.ANYON_LOGIN_CLIENT_IP_HEADER = "X-Forwarded-For"
    User.objects.create_user("bob", password=PASSWORD)
    # Every request comes from the proxy (127.0.0.1); one client's failures do not lock the others out.
    for name in ("a", "b", "c", "d", "e"):
        fail(name, 1, HTTP_X_FORWARDED_FOR="192.0.2.1")
    assert sign_in("bob", PASSWORD, HTTP_X_FORWARDED_FOR="192.0.2.1")[1].status_code == 429
    assert sign_in("bob", PASSWORD, HTTP_X_FORWARDED_FOR="192.0.2.2")[1].status_code == 302
    # A client cannot pick its own address: the proxy appends the real one, and only the right-most entry counts.
    assert sign_in("bob", PASSWORD, HTTP_X_FORWARDED_FOR="192.0.2.99, 192.0.2.1")[1].status_code == 429
    # Junk in the header falls back to the peer address, which has no failures.
    assert sign_in("bob", PASSWORD, HTTP_X_FORWARDED_FOR="not-an-address")[1].status_code == 302


@pytest.mark.django_db(transaction=True)
async def test_the_lockout_page_under_asgi_is_the_page_not_an_error():
    await User.objects.acreate_user("ada", password=PASSWORD)
    client = AsyncClient(REMOTE_ADDR="203.0.113.77")
    for _ in range(5):
        response = await client.post("/login/", {"username": "ada", "password": "wrong password"})
    assert response.status_code == 429 and LOCKED in response.content
    response = await client.post("/login/", {"username": "ada", "password": PASSWORD})
    assert response.status_code == 429 and LOCKED in response.content and b"Traceback" not in response.content


def load_settings(**env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "anyon.settings", "DEBUG": "true", **env}
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.AXES_FAILURE_LIMIT, s.AXES_COOLOFF_TIME.total_seconds())"
    )
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True)


def test_the_limits_come_from_the_environment():
    done = load_settings(ANYON_LOGIN_FAILURE_LIMIT="3", ANYON_LOGIN_COOLOFF_MINUTES="2.5")
    assert done.stdout.split() == ["3", "150.0"], done.stderr
    refused = load_settings(ANYON_LOGIN_FAILURE_LIMIT="0")
    assert refused.returncode != 0 and "ANYON_LOGIN_FAILURE_LIMIT" in refused.stderr
