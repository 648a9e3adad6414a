"""The Claude Code release in the runtime image, against a fake npm registry."""

import pytest

from anyon import health


@pytest.mark.docker
def test_the_claude_code_release_in_the_image_is_compared_with_the_registry(docker_client, db, settings, runtime_image):
    """A fake npm registry on 127.0.0.1: newer, same, unreachable."""
    from django.core.cache import cache

    from tests.fakes.http_server import FakeHTTPServer, Reply

    current = docker_client.images.get(settings.ANYON_CLOUD_IMAGE).labels[health.CLAUDE_CODE_LABEL]
    answer = {"version": "999.0.0"}

    class Registry(FakeHTTPServer):
        def handle(self, request):
            assert request.path == "/@anthropic-ai%2Fclaude-code/latest"
            return Reply(200, answer)

    with Registry() as registry:
        settings.ANYON_NPM_REGISTRY_URL = registry.url
        cache.clear()
        newer = health.check_claude_cli()
        assert newer.status == health.WARN and f"{current} in the image; 999.0.0 is released" in newer.detail
        assert newer.fix == "make image CLAUDE_CODE_VERSION=999.0.0"
        answer["version"] = current
        cache.clear()
        assert health.check_claude_cli().status == health.OK
    settings.ANYON_NPM_REGISTRY_URL = "http://127.0.0.1:9"
    cache.clear()
    unknown = health.check_claude_cli()
    assert unknown.status == health.WARN and "could not be reached" in unknown.detail and current in unknown.detail
