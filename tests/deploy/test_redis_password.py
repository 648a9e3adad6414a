"""The install's Redis password (``deploy/redis.sh``) against a real redis-server of the test on 127.0.0.1."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
import redis

from tests.fixtures.processes import ROOT, free_port
from tests.fixtures.services import require_service

REDIS_SH = ROOT / "deploy" / "redis.sh"


class Server:
    """redis-server started with a config file, as Debian's is; restartable to show what the file keeps."""

    def __init__(self, conf: Path) -> None:
        self.conf, self.port, self.proc = conf, free_port(), None
        conf.write_text(f'bind 127.0.0.1\nport {self.port}\nsave ""\nappendonly no\ndir {conf.parent}\n')
        conf.chmod(0o640)

    def start(self) -> None:
        self.proc = subprocess.Popen(["redis-server", str(self.conf)], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.ping(None) is not None:
                return
            time.sleep(0.1)
        raise AssertionError("redis-server did not start")

    def stop(self) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(timeout=20)

    def ping(self, password: str | None) -> str | None:
        """PONG, NOAUTH (a password is needed), WRONGPASS, or None when nothing answers."""
        try:
            return "PONG" if redis.Redis(port=self.port, password=password, socket_timeout=2).ping() else "?"
        except redis.AuthenticationError as exc:
            return "WRONGPASS" if "WRONGPASS" in str(exc) or "invalid" in str(exc) else "NOAUTH"
        except redis.ResponseError as exc:
            return "NOAUTH" if "NOAUTH" in str(exc) else str(exc)
        except redis.ConnectionError:
            return None


@pytest.fixture
def server(tmp_path):
    if not shutil.which("redis-server") or not shutil.which("redis-cli"):
        require_service("redis-server is needed (apt-get install redis-server)")
    found = Server(tmp_path / "redis.conf")
    found.start()
    yield found
    found.stop()


def require_password(server: Server) -> subprocess.CompletedProcess:
    script = (
        f'. "{REDIS_SH}"; redis_require_password "$1" "$2" || exit 1; '
        'printf "%s\\n" "$REDIS_PASSWORD_STATE"; redis_url_password "$REDIS_PASSWORD" >"$3"'
    )
    return subprocess.run(
        ["bash", "-c", script, "sh", str(server.conf), str(server.port), str(server.conf.parent / "url-password")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def config_password(conf: Path) -> str:
    (line,) = [line for line in conf.read_text().splitlines() if line.startswith("requirepass ")]
    return line.removeprefix("requirepass ")


@pytest.mark.hostile
def test_a_password_is_generated_kept_in_the_config_applied_live_and_never_printed(server):
    assert server.ping(None) == "PONG"  # Debian's default: any local account gets in
    done = require_password(server)
    assert done.returncode == 0, done.stderr
    password = config_password(server.conf)
    assert len(password) == 64 and password not in done.stdout + done.stderr
    assert done.stdout.strip() == f"password set in {server.conf}"
    assert server.conf.stat().st_mode & 0o777 == 0o640  # the file keeps its mode
    assert server.ping(None) == "NOAUTH"  # live, without a restart: another local account is refused
    assert server.ping("guessed") == "WRONGPASS"
    assert server.ping(password) == "PONG"
    assert (server.conf.parent / "url-password").read_text().strip() == password  # hex: the same in a URL

    again = require_password(server)
    assert again.returncode == 0 and again.stdout.strip() == "unchanged"
    assert config_password(server.conf) == password  # a second run keeps it

    server.stop()
    server.start()  # what the file says survives a restart
    assert server.ping(None) == "NOAUTH" and server.ping(password) == "PONG"


def test_an_operators_password_is_used_and_a_readable_config_is_closed(server):
    password = "p@ss/w%rd:x+y"  # what a URL must encode
    server.conf.write_text(server.conf.read_text() + f"requirepass {password}\n")
    server.conf.chmod(0o644)
    done = require_password(server)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{server.conf} no longer readable by others"
    assert server.conf.stat().st_mode & 0o777 == 0o640
    assert server.ping(password) == "PONG" and server.ping(None) == "NOAUTH"  # the file's password, set live
    assert (server.conf.parent / "url-password").read_text().strip() == "p%40ss%2Fw%25rd%3Ax%2By"


def test_a_server_with_another_password_than_its_file_is_refused(server):
    server.conf.write_text(server.conf.read_text() + "requirepass from-the-file\n")
    redis.Redis(port=server.port).config_set("requirepass", "set-by-hand")
    done = require_password(server)
    assert done.returncode == 1 and "does not accept the requirepass" in done.stderr
    assert "from-the-file" not in done.stderr and "set-by-hand" not in done.stderr


def test_without_a_config_file_nothing_is_changed(server, tmp_path):
    missing = Server.__new__(Server)
    missing.conf, missing.port = tmp_path / "none.conf", server.port
    done = require_password(missing)
    assert done.returncode == 1 and "no Redis config file" in done.stderr
    assert server.ping(None) == "PONG"
