import os

import pytest
from django.core.management import CommandError, call_command


@pytest.mark.django_db
def test_doctor_fails_with_fix_when_engine_is_down(settings, tmp_path, capsys):
    settings.DOCKER_HOST = "unix:///nonexistent/docker.sock"
    settings.ANYON_TEMP_DIR = tmp_path
    os.chmod(tmp_path, 0o700)
    with pytest.raises(CommandError) as excinfo:
        call_command("doctor")
    out = capsys.readouterr().out
    assert "✗ docker engine" in out
    assert "fix: start Docker" in out
    assert "✓ database" in out
    assert "✓ migrations" in out
    assert "docker engine" in str(excinfo.value)


@pytest.mark.django_db
def test_doctor_json_lists_every_check(settings, tmp_path, capsys):
    settings.DOCKER_HOST = "unix:///nonexistent/docker.sock"
    settings.ANYON_TEMP_DIR = tmp_path / "missing"
    with pytest.raises(CommandError):
        call_command("doctor", "--json")
    import json

    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)}
    assert set(checks) == {
        "python",
        "database",
        "migrations",
        "secret key",
        "temp dir",
        "data dir",
        "container uid",
        "docker engine",
        "docker version",
        "disk",
        "runtime image",
        "claude code",
        "worker",
        "docker hosts",
        "egress proxy",
        "wake-ups",
    }
    assert checks["temp dir"]["status"] == "fail" and "mkdir -p" in checks["temp dir"]["fix"]


def test_doctor_exits_nonzero_as_a_process(tmp_path):
    """The real command line: exit status 1 and the ✗ line, as an operator sees it."""
    import subprocess
    import sys

    env = dict(os.environ, DOCKER_HOST="unix:///nonexistent/docker.sock", DATABASE_URL=f"sqlite:///{tmp_path}/x.db")
    proc = subprocess.run(
        [sys.executable, "manage.py", "doctor"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert "✗ docker engine" in proc.stdout
    assert "✗ migrations" in proc.stdout  # a fresh database has not been migrated


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


@pytest.mark.parametrize(
    "case",
    ["no secret key", "no Docker", "no image"],
)
def test_doctor_runs_and_reports_in_every_configuration(tmp_path, case):
    """Doctor says what is missing as one of its lines, never as a traceback: no key (DEBUG off), no engine, an
    image that is not there."""
    import subprocess
    import sys

    from tests.fixtures.processes import ROOT

    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "DEBUG")}
    env.update(
        DJANGO_SETTINGS_MODULE="anyon.settings",
        DATABASE_URL=f"sqlite:///{tmp_path}/x.db",
        ANYON_TEMP_DIR=str(tmp_path / "t"),
        ANYON_DATA_DIR=str(tmp_path / "d"),
        ANYON_SECRET_KEY="k" * 48,
        DOCKER_HOST="unix:///nonexistent/docker.sock",
    )
    expected = ["✗ docker engine", "not reachable"]
    if case == "no secret key":
        env.pop("ANYON_SECRET_KEY")
        expected = ["✗ secret key", "ANYON_SECRET_KEY is not set"]
    elif case == "no image":
        env.pop("DOCKER_HOST")
        env["ANYON_CLOUD_IMAGE"] = "anyon/no-such-image:0"
        expected = ["✗ runtime image", "anyon/no-such-image:0 is not present"]
    proc = subprocess.run(
        [sys.executable, "manage.py", "doctor"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-2000:]
    assert proc.returncode == 1 and all(part in proc.stdout for part in expected), proc.stdout


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


def test_a_new_data_dir_is_created_0700(tmp_path):
    """The default SQLite setup (no DATABASE_URL) creates ANYON_DATA_DIR for this user only, whatever the umask."""
    import subprocess
    import sys

    from tests.fixtures.processes import ROOT

    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL",)}
    env.update(DJANGO_SETTINGS_MODULE="anyon.settings", ANYON_DATA_DIR=str(tmp_path / "new" / "var"))
    code = "import os; os.umask(0); import django; django.setup()"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, timeout=60)
    assert oct((tmp_path / "new" / "var").stat().st_mode & 0o777) == "0o700"


def test_a_new_sqlite_database_and_its_wal_are_0600(tmp_path):
    """The first connection of a fresh install (umask 0) leaves the database, -wal and -shm 0600."""
    import subprocess
    import sys

    from tests.fixtures.processes import ROOT

    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL",)}
    env.update(DJANGO_SETTINGS_MODULE="anyon.settings", ANYON_DATA_DIR=str(tmp_path / "var"))
    code = (
        "import os; os.umask(0); import django; django.setup(); from django.db import connection; "
        "c = connection.cursor(); c.execute('CREATE TABLE t (x)'); "
        "print(sorted((n, oct(os.stat(os.path.join({!r}, n)).st_mode & 0o777)) for n in os.listdir({!r})))"
    ).format(str(tmp_path / "var"), str(tmp_path / "var"))
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "'anyon.sqlite3-wal', '0o600'" in run.stdout and "'anyon.sqlite3', '0o600'" in run.stdout, run.stdout


# --- the requirements doctor checks besides the services: Python, the engine's version, free disk ---------------


class FakeEngineClient:
    def __init__(self, version: dict | None = None, root: str = "") -> None:
        self._version, self._root = version, root

    def version(self) -> dict:
        if self._version is None:
            raise ConnectionError("engine down")
        return self._version

    def info(self) -> dict:
        return {"DockerRootDir": self._root}


@pytest.fixture
def engine(monkeypatch):
    """Replace the Docker client the checks use; returns a setter for what the fake engine answers."""
    from shared.docker import client

    def answer(**kwargs) -> None:
        monkeypatch.setattr(client, "get_docker_client", lambda **_: FakeEngineClient(**kwargs))

    return answer


def test_python_check_accepts_the_supported_versions_and_names_them(monkeypatch):
    from anyon import health

    check = health.check_python()
    assert check.status == health.OK and "supported: 3.11 to 3.13" in check.detail
    monkeypatch.setattr(health, "PYTHON_SUPPORTED", ((3, 20), (3, 21)))
    check = health.check_python()
    assert check.failed and check.required and "supports 3.20 to 3.21" in check.detail
    assert "recreate the virtualenv" in check.fix


def test_docker_version_check_refuses_an_engine_older_than_20_10(engine):
    from anyon import health

    engine(version={"Version": "19.03.15", "ApiVersion": "1.40"})
    check = health.check_docker_version()
    assert check.failed and "Docker 19.03.15, API 1.40" in check.detail and "20.10 or later" in check.detail
    engine(version={"Version": "20.10.24", "ApiVersion": "1.41"})
    assert health.check_docker_version().status == health.OK
    engine(version={"Version": "28.0.1", "ApiVersion": "1.48"})
    assert health.check_docker_version().status == health.OK  # 1.48 > 1.41 as versions, not as decimals
    engine(version=None)
    check = health.check_docker_version()
    assert check.failed and check.fix == "fix the engine first"


def test_disk_check_measures_the_data_dir_and_a_local_docker_root(engine, settings, tmp_path, monkeypatch):
    from anyon import health

    settings.DATA_DIR = tmp_path
    settings.DOCKER_HOST = ""
    docker_root = tmp_path / "docker"
    docker_root.mkdir()
    engine(version={}, root=str(docker_root))
    check = health.check_disk()
    assert (
        check.status == health.OK
        and f"data dir {tmp_path}:" in check.detail
        and f"Docker {docker_root}:" in check.detail
    )
    monkeypatch.setattr(health, "MIN_FREE_BYTES", 1 << 60)
    check = health.check_disk()
    assert check.status == health.WARN and not check.required and "grow the disk" in check.fix
    settings.DOCKER_HOST = "tcp://docker.internal:2376"  # the engine's disk is not this machine's
    check = health.check_disk()
    assert "Docker's data root is not on this machine (not measured)" in check.detail
    settings.DATA_DIR = tmp_path / "missing"
    check = health.check_disk()
    assert check.status == health.WARN and "cannot measure" in check.detail
