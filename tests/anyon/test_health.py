import os
import stat

import pytest
from django.test import override_settings
from django.urls import reverse

from anyon import health


@pytest.fixture
def no_docker(settings):
    """Point the Docker client at a socket where no engine listens."""
    settings.DOCKER_HOST = "unix:///nonexistent/docker.sock"


@pytest.fixture
def staff_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("ops", password="ops password 1", is_staff=True))
    return client


@pytest.mark.django_db
def test_healthz_tells_anonymous_callers_only_ok_or_not(client, no_docker):
    response = client.get(reverse("healthz"))
    assert response.status_code == 503 and response.json() == {"status": "unavailable"}


@pytest.mark.django_db
def test_healthz_503_names_engine_and_worker_when_down(staff_client, no_docker):
    client = staff_client
    response = client.get(reverse("healthz"))
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["docker"]["ok"] is False
    assert "not reachable" in body["checks"]["docker"]["detail"]
    assert body["checks"]["worker"]["ok"] is False


@pytest.mark.django_db
def test_healthz_is_public_and_not_cached(client, no_docker):
    response = client.get("/healthz")
    assert "no-cache" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]
    assert client.post("/healthz").status_code == 405


def test_temp_dir_check_demands_0700(tmp_path):
    path = tmp_path / "anyon"
    with override_settings(ANYON_TEMP_DIR=path):
        missing = health.check_temp_dir()
        assert missing.failed and "does not exist" in missing.detail and "chmod 700" in missing.fix
        path.mkdir(mode=0o755)
        os.chmod(path, 0o755)
        loose = health.check_temp_dir()
        assert loose.failed and "0755" in loose.detail
        os.chmod(path, 0o700)
        tight = health.check_temp_dir()
    assert not tight.failed
    # tmp_path is on the root disk here, not tmpfs: a warning with a mount command, not a failure.
    if tight.status == health.WARN:
        assert "tmpfs" in tight.fix and tight.required is False
    assert stat.S_IMODE(path.stat().st_mode) == 0o700


def test_tmpfs_detection_uses_longest_mount(tmp_path, monkeypatch):
    mounts = "rootfs / ext4 rw 0 0\ntmpfs /srv/anyon tmpfs rw 0 0\n"
    monkeypatch.setattr(health.Path, "read_text", lambda self, *a, **k: mounts)
    assert health._is_tmpfs(health.Path("/srv/anyon/cloud-secrets")) is True
    assert health._is_tmpfs(health.Path("/srv/anyone")) is False


def test_dev_key_source_is_a_warning(settings):
    settings.SECRET_KEY_SOURCE = "dev-file"
    check = health.check_secret_key()
    assert check.status == health.WARN and "ANYON_SECRET_KEY" in check.fix
    settings.SECRET_KEY_SOURCE = "env"
    assert health.check_secret_key().status == health.OK


@pytest.mark.docker
def test_healthz_reports_docker_api_version(docker_client, db, staff_client):
    body = staff_client.get("/healthz").json()
    assert body["checks"]["docker"]["ok"] is True
    assert "API " in body["checks"]["docker"]["detail"]


@pytest.mark.docker
def test_worker_heartbeat_becomes_visible(docker_client, live_worker):
    """A real qcluster process makes the worker check pass within seconds, and /healthz sees it."""
    import time

    deadline = time.monotonic() + 30
    check = health.check_worker()
    while check.failed and time.monotonic() < deadline:
        time.sleep(0.5)
        check = health.check_worker()
    assert not check.failed, live_worker.output()[-2000:]
    assert "heartbeat live" in check.detail
    live_worker.stop()
    deadline = time.monotonic() + 15
    while not health.check_worker().failed and time.monotonic() < deadline:
        time.sleep(0.5)
    assert health.check_worker().failed, "a stopped worker must stop counting as alive"


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
