import pytest

from tests.fakes.github import CLIENT_ID, FakeGitHub


@pytest.fixture
def github(settings):
    with FakeGitHub() as fake:
        settings.ANYON_GITHUB_URL = fake.url
        settings.ANYON_GITHUB_API_URL = fake.api_url
        settings.ANYON_GITHUB_CLIENT_ID = CLIENT_ID
        yield fake
