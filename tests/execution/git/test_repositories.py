"""The task form's list of the user's GitHub repositories, against the fake GitHub over real HTTP on 127.0.0.1."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from execution.attempts.actions import do_create_task, do_start_attempt
from execution.git import repositories
from secrets_app.github_connect import do_mark_github_token_rejected
from secrets_app.models import Secret, SecretState
from secrets_app.secret_store import do_store_secret
from secrets_app.selectors import github_status
from tests.fakes.github import classic_token
from tests.fakes.http_server import Reply
from tests.fixtures.queueing import held_from_workers

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def local_cache(settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "repos"}}
    cache.clear()
    yield
    cache.clear()


def connect(github, user, login: str) -> str:
    token = github.add_token(classic_token(), login=login)
    do_store_secret(owner=user, provider="github", kind="pat", value=token, account_login=login, scopes=["repo"])
    return token


def listing(github) -> list:
    return github.requests_to("/api/user/repos", "GET")


def names(found) -> list[str]:
    return [r["full_name"] for r in found.repositories]


def test_every_page_is_followed_by_its_link_header_with_the_parameters_github_needs(github, alice):
    connect(github, alice, "alice-gh")
    for i in range(250):
        github.list_repo("alice-gh", f"alice-gh/r{i:03}", pushed_at=f"2026-01-01T00:{i // 60:02}:{i % 60:02}Z")
    found = repositories.repositories_for(user=alice)
    assert found.error == "" and not found.truncated
    assert len(found.repositories) == 250 and len(set(names(found))) == 250
    assert names(found)[:2] == ["alice-gh/r249", "alice-gh/r248"]  # last push first
    requests = listing(github)
    assert [r.query["page"] for r in requests] == [["1"], ["2"], ["3"]]
    for request in requests:
        assert request.query["per_page"] == ["100"] and request.query["sort"] == ["pushed"]
        assert set(request.query["affiliation"][0].split(",")) == {"owner", "collaborator", "organization_member"}
        assert "ghp_" not in request.raw_query  # the token travels in the header only


def test_a_huge_account_is_listed_up_to_the_bound_and_says_so(github, alice, monkeypatch):
    monkeypatch.setattr(repositories, "MAX_PAGES", 2)
    connect(github, alice, "alice-gh")
    for i in range(250):
        github.list_repo("alice-gh", f"alice-gh/r{i:03}")
    found = repositories.repositories_for(user=alice)
    assert found.truncated and len(found.repositories) == 200
    assert len(listing(github)) == 2


def test_the_search_api_finds_what_the_bounded_list_left_out(github, alice):
    connect(github, alice, "alice-gh")
    github.list_repo("alice-gh", "alice-gh/needle-service")
    github.list_repo("alice-gh", "alice-gh/haystack")
    found = repositories.search_repositories_for(user=alice, query="needle user:someone-else")
    assert names(found) == ["alice-gh/needle-service"]
    (request,) = github.requests_to("/api/search/repositories", "GET")
    q = request.query["q"][0]
    assert "user:alice-gh" in q and "someone-else" not in q  # the user's own qualifiers are dropped


def test_repositories_with_tasks_that_ran_come_first_most_recent_first(github, alice, settings):
    connect(github, alice, "alice-gh")
    github.list_repo("alice-gh", "alice-gh/newest", pushed_at="2026-03-01T00:00:00Z")
    github.list_repo("alice-gh", "alice-gh/older", pushed_at="2026-02-01T00:00:00Z", private=True)
    github.list_repo("alice-gh", "acme/oldest", pushed_at="2026-01-01T00:00:00Z", affiliation="organization_member")
    github.list_repo("alice-gh", "acme/never-ran", pushed_at="2025-01-01T00:00:00Z", affiliation="collaborator")
    for name in ("acme/oldest", "alice-gh/older"):
        task = do_create_task(owner=alice, title="t", repo_url=f"{github.url}/{name}", base_branch="main", prompt="p")
        with held_from_workers():
            do_start_attempt(task=task)
    do_create_task(owner=alice, title="t", repo_url=f"{github.url}/acme/never-ran", base_branch="main", prompt="p")
    found = repositories.repositories_for(user=alice)
    assert names(found) == ["alice-gh/older", "acme/oldest", "alice-gh/newest", "acme/never-ran"]
    first = found.repositories[0]
    assert first["used"] and first["private"] and first["default_branch"] == "main"
    assert first["url"] == f"{github.url}/alice-gh/older" and first["pushed"] == "2026-02-01 00:00"


def test_the_list_is_cached_per_user_and_credential_and_reloaded_on_demand(github, alice):
    connect(github, alice, "alice-gh")
    github.list_repo("alice-gh", "alice-gh/one")
    assert names(repositories.repositories_for(user=alice)) == ["alice-gh/one"]
    github.list_repo("alice-gh", "alice-gh/two", pushed_at="2027-01-01T00:00:00Z")
    assert names(repositories.repositories_for(user=alice)) == ["alice-gh/one"]  # from the cache
    assert len(listing(github)) == 1
    assert names(repositories.repositories_for(user=alice, refresh=True)) == ["alice-gh/two", "alice-gh/one"]
    assert len(listing(github)) == 2
    connect(github, alice, "alice-other")  # a new credential: a new key, whatever the cache holds
    github.list_repo("alice-other", "alice-other/three")
    assert names(repositories.repositories_for(user=alice)) == ["alice-other/three"]


def test_no_token_in_the_cache_key_or_value(github, alice):
    token = connect(github, alice, "alice-gh")
    github.list_repo("alice-gh", "alice-gh/one")
    repositories.repositories_for(user=alice)
    stored = dict(cache._cache)  # LocMemCache: the pickled values by key
    assert stored, "the list was cached"
    for key, value in stored.items():
        assert token not in key and token[-8:] not in key
        assert token.encode() not in value and token[-8:].encode() not in value


def test_not_connected_says_so_with_a_link_to_settings(github, alice):
    found = repositories.repositories_for(user=alice)
    assert found.error == "not_connected" and found.settings_url == "/settings/"
    assert "Connect one in Settings" in found.message and not listing(github)


def test_a_rejected_token_is_marked_invalid_and_says_reconnect(github, alice):
    token = connect(github, alice, "alice-gh")
    del github.accounts[token]  # revoked on GitHub
    found = repositories.repositories_for(user=alice)
    assert found.error == "invalid" and found.settings_url == "/settings/"
    assert found.message.startswith("GitHub rejected your token: reconnect")
    secret = Secret.objects.get(owner=alice)
    assert secret.state == SecretState.INVALID and "401" in secret.state_reason
    assert github_status(owner=alice).state == "invalid"  # the settings card and the banner say so now
    again = repositories.repositories_for(user=alice, refresh=True)
    assert again.error == "invalid" and again.message == found.message
    assert len(listing(github)) == 1  # known rejected: GitHub is not asked again


def test_a_rejected_token_in_a_search_is_marked_invalid_too(github, alice):
    token = connect(github, alice, "alice-gh")
    del github.accounts[token]
    found = repositories.search_repositories_for(user=alice, query="needle")
    assert found.error == "invalid" and found.message.startswith("GitHub rejected your token: reconnect")
    assert Secret.objects.get(owner=alice).state == SecretState.INVALID


def test_a_401_marks_only_the_credential_that_was_sent(github, alice, bob):
    """Bob's token works; alice's is rejected: only alice's is marked, and a credential alice disconnected meanwhile
    stays disconnected (not turned into an invalid one)."""
    alice_token = connect(github, alice, "alice-gh")
    connect(github, bob, "bob-gh")
    del github.accounts[alice_token]
    assert repositories.repositories_for(user=alice).error == "invalid"
    assert repositories.repositories_for(user=bob).error == ""
    assert Secret.objects.get(owner=bob).state == SecretState.ACTIVE
    secret = Secret.objects.get(owner=alice)
    Secret.objects.filter(pk=secret.pk).update(state=SecretState.REVOKED)
    do_mark_github_token_rejected(secret_id=secret.pk, reason="GitHub answered 401")
    assert Secret.objects.get(pk=secret.pk).state == SecretState.REVOKED


def test_a_rate_limit_says_when_it_resets(github, alice, settings):
    settings.TIME_ZONE = "UTC"
    connect(github, alice, "alice-gh")
    reset_at = (timezone.now() + timedelta(hours=1)).replace(second=0, microsecond=0)
    reset = int(reset_at.timestamp())
    github.replies["GET", "/api/user/repos"] = Reply(
        403,
        {"message": "API rate limit exceeded for user ID 1."},
        {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset), "X-RateLimit-Limit": "5000"},
    )
    found = repositories.repositories_for(user=alice)
    assert found.error == "rate_limited"
    assert "rate limit" in found.message and f"{reset_at:%Y-%m-%d %H:%M}" in found.message
    github.replies.clear()
    assert repositories.repositories_for(user=alice).error == ""  # a failure is not cached


def test_a_403_that_is_not_a_rate_limit_is_not_called_one(github, alice):
    connect(github, alice, "alice-gh")
    github.replies["GET", "/api/user/repos"] = Reply(403, {"message": "Resource protected by SSO"})
    found = repositories.repositories_for(user=alice)
    assert found.error == "failed" and "403" in found.message and "SSO" in found.message


def test_github_unreachable_says_so(github, alice, settings):
    connect(github, alice, "alice-gh")
    settings.ANYON_GITHUB_API_URL = "http://127.0.0.1:9/api"
    found = repositories.repositories_for(user=alice)
    assert found.error == "unreachable" and "could not be reached" in found.message
    assert "type the URL" in found.message


@pytest.mark.hostile
def test_the_endpoint_is_for_its_signed_in_owner_only(github, alice, bob, client):
    connect(github, alice, "alice-gh")
    connect(github, bob, "bob-gh")
    github.list_repo("alice-gh", "alice-gh/secret-plans", private=True)
    github.list_repo("bob-gh", "bob-gh/bobs")
    assert client.get("/tasks/repositories/").status_code == 302  # signed out: to the login page
    client.force_login(bob)
    body = client.get("/tasks/repositories/").json()
    assert [r["full_name"] for r in body["repositories"]] == ["bob-gh/bobs"]
    client.force_login(alice)
    assert [r["full_name"] for r in client.get("/tasks/repositories/").json()["repositories"]] == [
        "alice-gh/secret-plans"
    ]
    client.force_login(bob)  # alice's list is cached now: bob still gets his own
    assert "secret-plans" not in client.get("/tasks/repositories/").content.decode()
    assert "secret-plans" not in client.get("/tasks/repositories/?q=secret").content.decode()


def test_reloading_posts_with_csrf(github, alice):
    connect(github, alice, "alice-gh")
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(alice)
    assert strict.post("/tasks/repositories/").status_code == 403
    assert not listing(github)


def test_an_expired_or_rejected_credential_says_connect_again_without_asking_github(github, alice):
    from datetime import timedelta

    from django.utils import timezone

    from secrets_app.models import Secret
    from secrets_app.secret_store import do_mark_secret_state

    token = github.add_token(classic_token(), login="alice-gh")
    do_store_secret(
        owner=alice, provider="github", kind="pat", value=token, account_login="alice-gh",
        expires_at=timezone.now() - timedelta(hours=1),
    )  # fmt: skip
    found = repositories.repositories_for(user=alice)
    assert found.error == "expired" and "expired" in found.message and found.settings_url == "/settings/"
    do_mark_secret_state(secret=Secret.objects.get(), state="invalid", reason="GitHub answered 401")
    found = repositories.repositories_for(user=alice)
    assert found.error == "invalid" and found.message.startswith("GitHub rejected your token: reconnect")
    assert not listing(github)


def test_without_a_known_login_nothing_is_searched(github, alice):
    token = github.add_token(classic_token(), login="alice-gh")
    do_store_secret(owner=alice, provider="github", kind="pat", value=token)  # no account login recorded
    github.list_repo("alice-gh", "alice-gh/needle")
    assert repositories.search_repositories_for(user=alice, query="needle").repositories == []
    assert not github.requests_to("/api/search/repositories", "GET")
