import pytest
from django.core.exceptions import ValidationError

from execution.git.repo_urls import validate_branch, validate_repo_url

pytestmark = pytest.mark.hostile  # attacks: counted in docs/QA_CHECKLIST.md

GOOD = [
    ("https://github.com/acme/widgets", "https://github.com/acme/widgets.git"),
    ("https://github.com/acme/widgets.git", "https://github.com/acme/widgets.git"),
    ("  https://GitHub.com/acme/my.repo_v2  ", "https://github.com/acme/my.repo_v2.git"),
]

HOSTILE = [
    ("ext::sh -c touch% /tmp/pwned", "Only https"),
    ("file:///etc/passwd", "Only https"),
    ("fd::17", "Only https"),
    ("ssh://-oProxyCommand=touch%20/tmp/x@github.com/a/b", "Only https"),
    ("git@github.com:acme/widgets.git", "Only https"),
    ("--upload-pack=touch /tmp/x", "cannot start with '-'"),
    ("-https://github.com/a/b", "cannot start with '-'"),
    ("https://user:ghp_secret@github.com/acme/widgets", "credentials"),
    ("https://x-access-token@github.com/acme/widgets", "credentials"),
    ("https://gitlab.com/acme/widgets", "Only repositories on github.com"),
    ("https://github.com.evil.com/acme/widgets", "Only repositories on github.com"),
    ("http://github.com/acme/widgets", "Only https"),
    ("https://github.com/acme/widgets?x=1", "query"),
    ("https://github.com/acme", "Use the form"),
    ("https://github.com/acme/widgets/extra", "Use the form"),
    ("https://github.com/acme/-widgets", "Use the form"),
    ("https://github.com/../../etc", "Use the form"),
    ("https://github.com/acme/" + "a" * 10_000, "characters long"),
    ("https://gіthub.com/acme/widgets", "plain ASCII"),  # Cyrillic і
    ("https://github.com/acme/wіdgets", "plain ASCII"),
    ("https://github.com/acme/wid gets", "plain ASCII"),
    ("https://github.com/acme/widgets\n--upload-pack=x", "plain ASCII"),
    ("", "Enter the repository URL"),
]


@pytest.mark.parametrize(("raw", "normal"), GOOD)
def test_good_urls_are_normalised(raw, normal):
    assert validate_repo_url(raw) == normal


@pytest.mark.parametrize(("raw", "message"), HOSTILE)
def test_hostile_urls_are_rejected_with_a_message(raw, message):
    with pytest.raises(ValidationError) as excinfo:
        validate_repo_url(raw)
    assert message in " ".join(excinfo.value.messages)


def test_enterprise_host_from_settings(settings):
    settings.ANYON_GITHUB_URL = "https://ghe.example.com"
    assert validate_repo_url("https://ghe.example.com/a/b") == "https://ghe.example.com/a/b.git"
    with pytest.raises(ValidationError):
        validate_repo_url("https://github.com/a/b")


@pytest.mark.parametrize("branch", ["main", "release/1.2", "feature_x-y"])
def test_good_branches(branch):
    assert validate_branch(branch) == branch


@pytest.mark.parametrize("branch", ["-b", "--orphan", "a..b", "x.lock", "a b", "", "a//b", "ünï", "refs/../x"])
def test_bad_branches(branch):
    with pytest.raises(ValidationError):
        validate_branch(branch)
