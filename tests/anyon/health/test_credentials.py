"""The checks that keep credentials this service's: temp dir, data dir, container uid, secret key."""

import os
import stat

import pytest
from django.test import override_settings

from anyon import health
from anyon.health import credentials


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
    monkeypatch.setattr(credentials.Path, "read_text", lambda self, *a, **k: mounts)
    assert credentials._is_tmpfs(credentials.Path("/srv/anyon/cloud-secrets")) is True
    assert credentials._is_tmpfs(credentials.Path("/srv/anyone")) is False


def test_dev_key_source_is_a_warning(settings):
    settings.SECRET_KEY_SOURCE = "dev-file"
    check = health.check_secret_key()
    assert check.status == health.WARN and "ANYON_SECRET_KEY" in check.fix
    settings.SECRET_KEY_SOURCE = "env"
    assert health.check_secret_key().status == health.OK


def test_container_uid_of_a_host_account_is_a_warning(settings):
    """That account could read every agent's /proc/<pid>/environ and its secret files through /proc/<pid>/root."""
    import pwd

    from anyon.health import OK, WARN, check_container_uid

    settings.ANYON_CONTAINER_UID = 0
    check = check_container_uid()
    assert check.status == WARN and "host account root" in check.detail and "/proc/<pid>/environ" in check.detail
    other = next(p for p in pwd.getpwall() if p.pw_uid not in (0, os.geteuid()))
    settings.ANYON_CONTAINER_UID = other.pw_uid
    check = check_container_uid()
    assert check.status == WARN and f"host account {other.pw_name}" in check.detail
    assert "CONTAINER_UID=" in check.fix and not check.required
    settings.ANYON_CONTAINER_UID = _free_uid()
    assert check_container_uid().status == OK or os.geteuid() != 0


def test_a_service_user_with_the_container_uid_is_a_warning(settings, monkeypatch):
    """The old single-VM steps gave the service user the containers' uid: every process of it can read the agents'."""
    import pwd

    from anyon.health import WARN, check_container_uid

    account = next(p for p in pwd.getpwall() if p.pw_uid not in (0, os.geteuid()))
    settings.ANYON_CONTAINER_UID = account.pw_uid
    monkeypatch.setattr(os, "geteuid", lambda: account.pw_uid)  # this service runs as that account
    check = check_container_uid()
    assert check.status == WARN and f"runs as uid {account.pw_uid}, the containers' own" in check.detail
    assert "deploy/install.sh" in check.fix and not check.required


def _free_uid() -> int:
    import pwd

    taken = {p.pw_uid for p in pwd.getpwall()}
    return next(uid for uid in range(61000, 62000) if uid not in taken)


def test_a_worker_that_cannot_hand_the_secret_dir_over_is_a_warning(settings, monkeypatch):
    from anyon.health import WARN, check_container_uid
    from shared import tempdir

    settings.ANYON_CONTAINER_UID = _free_uid()
    monkeypatch.setattr(tempdir.os, "geteuid", lambda: 4244)  # neither root nor the container uid ...
    monkeypatch.setattr(tempdir, "has_cap_chown", lambda: False)  # ... and no CAP_CHOWN
    check = check_container_uid()
    assert check.status == WARN and "cannot give the secret dir" in check.detail and "CAP_CHOWN" in check.fix


@pytest.mark.django_db
def test_database_files_with_loose_permissions_are_made_0600_and_doctor_reports_them(tmp_path, monkeypatch):
    """A database (and its -wal/-shm) left 0644 by an older version or a wide umask: doctor fails on it, and the next
    connection makes every file 0600."""
    import sqlite3
    import stat

    from django.db import connections
    from django.db.backends.sqlite3.base import DatabaseWrapper

    from anyon.health import FAIL, OK, WARN, check_data_dir

    folder = tmp_path / "var"
    folder.mkdir(mode=0o700)
    db = folder / "anyon.sqlite3"
    holder = sqlite3.connect(db)  # kept open: the -wal and -shm files exist while a connection does
    holder.execute("PRAGMA journal_mode=WAL")
    holder.execute("CREATE TABLE t (x)")
    holder.commit()
    files = [db, folder / "anyon.sqlite3-wal", folder / "anyon.sqlite3-shm"]
    for file in files:
        os.chmod(file, 0o644)
    monkeypatch.setitem(connections["default"].settings_dict, "NAME", str(db))
    check = check_data_dir()
    assert check.status == FAIL and "anyon.sqlite3-wal (0644" in check.detail and "chmod 600" in check.fix
    wrapper = DatabaseWrapper({**connections["default"].settings_dict, "NAME": str(db)}, "hostile")
    wrapper.connect()
    try:
        assert [oct(stat.S_IMODE(f.stat().st_mode)) for f in files] == ["0o600"] * 3
        assert check_data_dir().status == OK
        os.chmod(folder, 0o755)
        check = check_data_dir()
        assert check.status == WARN and "other users can list it" in check.detail and "chmod 700" in check.fix
    finally:
        wrapper.close()
        holder.close()
