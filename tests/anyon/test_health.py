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


@pytest.mark.django_db
def test_healthz_503_names_engine_and_worker_when_down(client, no_docker):
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
def test_healthz_reports_docker_api_version(docker_client, db, client):
    body = client.get("/healthz").json()
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
