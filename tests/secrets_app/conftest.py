import pytest
from django.contrib.auth.models import User

from tests.fakes.github import CLIENT_ID, FakeGitHub


@pytest.fixture
def github(settings):
    with FakeGitHub() as fake:
        settings.ANYON_GITHUB_URL = fake.url
        settings.ANYON_GITHUB_API_URL = fake.api_url
        settings.ANYON_GITHUB_CLIENT_ID = CLIENT_ID
        yield fake


@pytest.fixture
def alice(db):
    return User.objects.create_user("alice", password="alice password 123")


@pytest.fixture
def bob(db):
    return User.objects.create_user("bob", password="bob password 123")


@pytest.fixture
def alice_client(client, alice, settings):
    settings.DOCKER_HOST = "unix:///nonexistent/docker.sock"  # no engine ping per page in these tests
    client.force_login(alice)
    return client
