"""What the secrets app's tests share: a pasted Anthropic API key and the fake Anthropic API that accepts it."""

import pytest

from tests.fakes.anthropic_api import FakeAnthropicAPI
from tests.fixtures.leaks import track_secret

API_KEY = track_secret("sk-ant-api03-" + "K" * 40 + "Zz")


@pytest.fixture
def anthropic(settings):
    with FakeAnthropicAPI(expected_token=API_KEY) as fake:
        settings.ANYON_ANTHROPIC_API_URL = fake.url
        yield fake
