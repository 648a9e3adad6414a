"""The checks of what the app runs on besides Docker: Python, wake-ups, the worker."""

import pytest

from anyon import health


def test_python_check_accepts_the_supported_versions_and_names_them(monkeypatch):
    from anyon import health
    from anyon.health import services

    check = health.check_python()
    assert check.status == health.OK and "supported: 3.11 to 3.13" in check.detail
    monkeypatch.setattr(services, "PYTHON_SUPPORTED", ((3, 20), (3, 21)))
    check = health.check_python()
    assert check.failed and check.required and "supports 3.20 to 3.21" in check.detail
    assert "recreate the virtualenv" in check.fix


def test_wakeups_check_says_what_is_slower_and_how_to_fix_it(settings, tmp_path):
    from anyon.health import OK, WARN, check_wakeups
    from shared.wakeups.sockets import Listener

    settings.REDIS_URL = ""
    settings.ANYON_WAKEUP_DIR = str(tmp_path / "wake")
    listener = Listener("layer")
    try:
        check = check_wakeups()
        assert check.status == OK and "1 process(es) listening" in check.detail
    finally:
        listener.close()
    settings.ANYON_WAKEUP_DIR = ""
    check = check_wakeups()
    assert check.status == WARN and "waits for the polls" in check.detail and "unset ANYON_WAKEUP_DIR" in check.fix
    settings.ANYON_WAKEUP_DIR = str(tmp_path / ("long" * 25))
    assert "too long" in check_wakeups().detail
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    settings.ANYON_WAKEUP_DIR = str(blocker / "wake")
    check = check_wakeups()
    assert check.status == WARN and "cannot use" in check.detail


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
