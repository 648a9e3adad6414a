"""What a refused pull request says, against the fake GitHub over real HTTP (no Docker: the request alone)."""

import pytest

from execution.attempts.actions import do_create_task, do_start_attempt
from execution.git.pull_requests import PullRequestError, open_pull_request
from secrets_app.models import Secret, SecretState
from secrets_app.secret_store import do_store_secret
from tests.fakes.github import classic_token
from tests.fixtures.queueing import held_from_workers

pytestmark = pytest.mark.django_db


def attempt_on(github, alice, repo: str, scopes: list[str]):
    token = github.add_token(classic_token(), login="alice-gh", scopes=scopes)
    do_store_secret(owner=alice, provider="github", kind="pat", value=token, account_login="alice-gh", scopes=scopes)
    task = do_create_task(owner=alice, title="t", repo_url=f"{github.url}/{repo}", base_branch="main", prompt="p")
    with held_from_workers():
        return do_start_attempt(task=task)


def test_a_404_says_not_found_or_not_visible_and_what_to_check_not_a_missing_permission(github, alice, settings):
    """The token has repo; GitHub's 404 means the repository (or the API address) was not found
    or the token cannot see it, which is what the message says."""
    attempt = attempt_on(github, alice, "acme/missing", ["repo", "read:user"])
    with pytest.raises(PullRequestError) as caught:
        open_pull_request(attempt=attempt, title="t", body="b", actor="test")
    text = str(caught.value)
    assert "404" in text and "no permission" not in text and "scope" not in text
    assert "there is no repository acme/missing" in text and "cannot see it" in text
    assert "repository URL" in text and "ANYON_GITHUB_API_URL" in text and settings.ANYON_GITHUB_API_URL in text


def test_a_403_is_still_a_permission_problem(github, alice):
    github.add_repo("acme", "widgets")
    attempt = attempt_on(github, alice, "acme/widgets", ["read:user"])
    with pytest.raises(PullRequestError, match="no permission to open pull requests in acme/widgets"):
        open_pull_request(attempt=attempt, title="t", body="b", actor="test")


def test_a_401_says_reconnect_and_marks_the_credential_invalid(github, alice):
    github.add_repo("acme", "widgets")
    attempt = attempt_on(github, alice, "acme/widgets", ["repo"])
    github.accounts.clear()  # every token revoked on GitHub
    with pytest.raises(PullRequestError, match=r"GitHub rejected your token \(401\): reconnect GitHub in Settings"):
        open_pull_request(attempt=attempt, title="t", body="b", actor="test")
    secret = Secret.objects.get(owner=alice)
    assert secret.state == SecretState.INVALID and "pull request" in secret.state_reason
