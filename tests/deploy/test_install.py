# Long because install, backup and restore are one real sequence on this machine, checked step by step.
"""``deploy/install.sh`` on this machine, then backup and restore with ``anyon-ctl``.

Everything is real except systemd, which is not PID 1 here: ``tests/fakes/systemctl.py`` stands in for
``systemctl`` and starts each unit the way systemd would (its user and groups, settings file, command line,
capabilities, working folder). The install runs as root into a temporary root folder, as its own instance, with its
own user and its own PostgreSQL role and database (a PostgreSQL cluster of the test, on a free port, administered
through its socket as the ``postgres`` account, as Debian's is) and its own Redis. The first run skips the image
step; the second runs it, on the image CI built from this checkout, which it leaves unchanged. Attempts run on the
real Docker engine with the real runtime image.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.fixtures.processes import ARTIFACTS, ROOT, free_port
from tests.fixtures.services import postgres_bindir, require_service

pytestmark = [pytest.mark.docker]

FAKE_SYSTEMCTL = ROOT / "tests" / "fakes" / "systemctl.py"
INSTANCE = f"ci{os.getpid()}"
NAME = f"anyon-{INSTANCE}"
DB = NAME.replace("-", "_")
UNITS = [f"{NAME}-egress.service", f"{NAME}-worker.service", f"{NAME}-web.service"]
EMBEDDED = f"ci{os.getpid()}-sqlite"  # a second installation on the same host, on the embedded default


def wait_for(check, what: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"{what} did not happen within {timeout}s")


@pytest.fixture(scope="module")
def host(runtime_image):
    if os.geteuid() != 0:
        pytest.skip("the install creates a user and services: run as root (CI does)")
    bindir = postgres_bindir()
    if bindir is None or not shutil.which("redis-server"):
        require_service("PostgreSQL and redis-server are needed (apt-get install postgresql redis-server)")
    root = Path(tempfile.mkdtemp(prefix="anyon-inst-"))  # not below root's 0700 pytest folder: the user reads it
    root.chmod(0o755)
    pg = root / "pg"
    (pg / "sock").mkdir(parents=True)
    shutil.chown(pg, "postgres", "postgres")
    shutil.chown(pg / "sock", "postgres", "postgres")
    as_postgres = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*as_postgres, str(bindir / "initdb"), "-D", str(pg / "data"), "-U", "postgres", "--auth-local=peer",
         "--auth-host=scram-sha-256"], check=True, capture_output=True, cwd="/",
    )  # fmt: skip
    pg_port, redis_port = free_port(), free_port()
    ARTIFACTS.mkdir(exist_ok=True)
    redis_conf = root / "etc" / "redis" / "redis.conf"  # as Debian's: the install sets its password there
    redis_conf.parent.mkdir(parents=True)
    redis_conf.write_text(f'bind 127.0.0.1\nport {redis_port}\nsave ""\nappendonly no\n')
    redis_conf.chmod(0o640)
    servers = [
        subprocess.Popen(
            [*as_postgres, str(bindir / "postgres"), "-D", str(pg / "data"), "-p", str(pg_port), "-k", str(pg / "sock"),
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
            stdout=(ARTIFACTS / "install-postgres.log").open("w"), stderr=subprocess.STDOUT, cwd="/",
        ),
        subprocess.Popen(
            ["redis-server", str(redis_conf)],
            stdout=(ARTIFACTS / "install-redis.log").open("w"), stderr=subprocess.STDOUT,
        ),
    ]  # fmt: skip
    fakebin = root / "fakebin"
    fakebin.mkdir()
    (fakebin / "systemctl").symlink_to(FAKE_SYSTEMCTL)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANYON_", "DJANGO_", "DATABASE_URL", "REDIS_URL"))}
    env.update(
        PATH=f"{fakebin}:{env['PATH']}",
        ANYON_FAKE_SYSTEMD_UNITS=str(root / "etc/systemd/system"),
        ANYON_FAKE_SYSTEMD_STATE=str(root / "fake-systemd"),
    )

    def psql(sql: str, database: str = "postgres") -> str:
        return subprocess.run(
            [*as_postgres, "psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-h", str(pg / "sock"), "-p",
             str(pg_port), "-d", database, "-c", sql], check=True, capture_output=True, text=True, cwd="/",
        ).stdout.strip()  # fmt: skip

    wait_for(lambda: subprocess.run(["pg_isready", "-q", "-h", str(pg / "sock"), "-p", str(pg_port)]).returncode == 0,
             "PostgreSQL starting")  # fmt: skip
    install_argv = [
        str(ROOT / "deploy" / "install.sh"), "--instance", INSTANCE, "--root", str(root),
        "--server-name", "anyon-ci.test", "--port", str(free_port()), "--postgres-port", str(pg_port),
        "--postgres-socket-dir", str(pg / "sock"), "--redis-port", str(redis_port), "--skip-image",
    ]  # fmt: skip
    yield {"root": root, "env": env, "psql": psql, "install": install_argv, "redis_port": redis_port}
    import docker

    client = docker.from_env()
    for instance in (INSTANCE, EMBEDDED):
        name = f"anyon-{instance}"
        units = [root / "etc/systemd/system" / f"{name}-{role}.service" for role in ("web", "worker", "egress")]
        existing = [u.name for u in units if u.exists()]
        if existing:
            subprocess.run([str(FAKE_SYSTEMCTL), "stop", *existing], env=env, check=False, timeout=120)
        for container in client.containers.list(all=True, filters={"label": f"anyon.instance={instance}"}):
            container.remove(force=True)
        for volume in client.volumes.list(filters={"label": f"anyon.instance={instance}"}):
            volume.remove(force=True)  # the attempts' workspaces, kept for ANYON_ATTEMPT_IDLE_TTL otherwise
        subprocess.run(["userdel", name], check=False, capture_output=True)
        subprocess.run(["groupdel", name], check=False, capture_output=True)
    for server in servers:
        server.terminate()
        server.wait(timeout=30)
    shutil.rmtree(root, ignore_errors=True)


def run(argv: list[str], env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    (ARTIFACTS / "install-commands.log").open("a").write(f"$ {' '.join(argv)}\n{done.stdout}{done.stderr}\n")
    return done


ATTEMPT = """
from django.contrib.auth.models import User
from execution.attempts.actions import do_create_task, do_start_attempt
user, _ = User.objects.get_or_create(username="deployed")
task = do_create_task(owner=user, title="t", repo_url="https://github.com/acme/app", base_branch="main", prompt="p")
step = {"kind": "custom", "title": "hello", "argv": ["sh", "-c", "echo deployed-$((6*7)) as $(id -u)"]}
print("ATTEMPT", do_start_attempt(task=task, plan=[step]).pk)
"""


def run_an_attempt(ctl: list[str], env: dict, database_url: str) -> None:
    """An attempt on the real engine, started by the installed code as its user: the worker hands its sealed
    sockets over (CAP_CHOWN of the unit) and the step's output is stored."""
    import psycopg

    made = run([*ctl, "manage", "shell", "-c", ATTEMPT], env)
    assert made.returncode == 0, made.stderr
    attempt = int(re.search(r"ATTEMPT (\d+)", made.stdout).group(1))

    def finished():
        with psycopg.connect(database_url.replace("postgres://", "postgresql://")) as conn:
            status = conn.execute("SELECT status FROM execution_attempt WHERE id = %s", (attempt,)).fetchone()[0]
            lines = conn.execute(
                "SELECT string_agg(text, '') FROM execution_logrecord WHERE attempt_id = %s", (attempt,)
            ).fetchone()[0]
        return (status, lines or "") if status in ("succeeded", "failed", "cancelled", "timed_out") else None

    status, log = wait_for(finished, f"attempt {attempt} finishing", timeout=120)
    assert status == "succeeded" and "deployed-42 as 61000" in log, log[-2000:]


def test_install_twice_then_back_up_and_restore(host):
    root, env, psql = host["root"], host["env"], host["psql"]
    etc, srv = root / "etc" / NAME, root / "srv" / NAME
    ctl = [str(root / "usr/local/sbin" / f"{NAME}-ctl")]

    first = run(host["install"], env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert f"created {NAME}" in first.stdout and "created role" in first.stdout
    assert re.search(r"migrations +applied \d+", first.stdout)
    assert "Its generated password (shown only now)" in first.stdout
    assert "All required checks passed." in first.stdout  # doctor, as the services' user, with them running

    # The service user: its own system uid, never the containers' (61000), in the Docker socket's group.
    user = pwd.getpwnam(NAME)
    assert user.pw_uid != 61000 and user.pw_uid < 1000
    # The settings file: root's to change, the service user's to read (so its doctor works), nobody else's.
    info = (etc / "env").stat()
    assert (pwd.getpwuid(info.st_uid).pw_name, oct(info.st_mode & 0o777)) == ("root", "0o640")
    assert info.st_gid == user.pw_gid
    settings = (etc / "env").read_text()
    assert re.search(r"^ANYON_SECRET_KEY=[A-Za-z0-9_-]{64}$", settings, re.MULTILINE)
    assert f"ANYON_INSTANCE={INSTANCE}\n" in settings and "DEBUG=false\n" in settings
    database_url = re.search(r"^DATABASE_URL=(\S+)$", settings, re.MULTILINE).group(1)
    assert "@127.0.0.1:" in database_url and database_url.endswith(f"/{DB}")
    assert psql(f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{DB}'") == DB  # noqa: S608
    # Redis: a generated password in its config and in REDIS_URL, never in the output; without it Redis says no.
    redis_password = re.search(r"^requirepass (\S+)$", (root / "etc/redis/redis.conf").read_text(), re.MULTILINE)[1]
    redis_url = re.search(r"^REDIS_URL=(\S+)$", settings, re.MULTILINE).group(1)
    assert redis_url == f"redis://:{redis_password}@127.0.0.1:{host['redis_port']}/0"
    assert redis_password not in first.stdout + first.stderr
    import redis

    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=host["redis_port"]).ping()
    # The code is root's: the service user runs it but cannot change it.
    assert (srv / "app").stat().st_uid == 0 and (srv / "app").stat().st_mode & 0o022 == 0
    assert (srv / "app" / "manage.py").stat().st_mode & 0o022 == 0
    assert (srv / "backups").stat().st_mode & 0o777 == 0o700 and (srv / "backups").stat().st_uid == 0

    # The units: systemd's own checker finds nothing; the proxy and the worker may chown, the proxy may open many files.
    unit_dir = root / "etc/systemd/system"
    verify = subprocess.run(
        ["systemd-analyze", "verify", *(str(unit_dir / u) for u in UNITS)], capture_output=True, text=True, check=False
    )
    problems = [line for line in verify.stderr.splitlines() if not re.search(r"Unit \S+ not found", line)]
    assert verify.returncode == 0 and not problems, verify.stderr
    egress, worker, web = ((unit_dir / u).read_text() for u in UNITS)
    assert "LimitNOFILE=65536" in egress and "AmbientCapabilities=CAP_CHOWN" in egress
    assert "AmbientCapabilities=CAP_CHOWN" in worker and "KillMode=mixed" in worker and "TimeoutStopSec=" in worker
    assert "AmbientCapabilities" not in web and "manage.py serve --no-worker" in web
    assert f"EnvironmentFile={etc / 'env'}" in web and f"User={NAME}" in web
    if shutil.which("nginx"):
        site = (root / "etc/nginx/sites-available" / NAME).read_text()
        assert "listen 443 ssl" in site and str(etc / "tls/self-signed.crt") in site

    pids = {u: (root / "fake-systemd" / f"{u}.pid").read_text() for u in UNITS}
    # Again, now with the image step: CI built the image from this checkout, so it is unchanged too.
    second = run([a for a in host["install"] if a != "--skip-image"], env)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    items = [line for line in second.stdout.splitlines() if re.match(r"  \S", line)]
    assert items and all(" unchanged" in line for line in items), "\n".join(items)
    assert "Done: nothing changed." in second.stdout and "runtime image" in second.stdout
    assert pids == {u: (root / "fake-systemd" / f"{u}.pid").read_text() for u in UNITS}  # nothing restarted

    # An upgrade: a new version of the code (here a release tarball, no git) is copied and the services restarted.
    release = root / "release"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "--null", "-T", "-", "-cf", str(root / "release.tar")], cwd=ROOT, input=files, check=True)
    release.mkdir()
    subprocess.run(["tar", "-xf", str(root / "release.tar")], cwd=release, check=True)
    with (release / "anyon" / "__init__.py").open("a") as handle:
        handle.write("# the next release\n")
    # ... from a version that wrote REDIS_URL without the password: the upgrade puts it in.
    (etc / "env").write_text(settings.replace(redis_url, f"redis://127.0.0.1:{host['redis_port']}/0"))
    upgrade = run([str(release / "deploy" / "install.sh"), *host["install"][1:]], env)
    assert upgrade.returncode == 0, upgrade.stdout[-3000:] + upgrade.stderr[-3000:]
    assert re.search(r"^  Redis +database 0 on port \d+, its password put in REDIS_URL$", upgrade.stdout, re.MULTILINE)
    assert f"REDIS_URL={redis_url}\n" in (etc / "env").read_text()
    assert re.search(r"^  code +copied to ", upgrade.stdout, re.MULTILINE)
    assert re.search(r"^  migrations +unchanged", upgrade.stdout, re.MULTILINE)
    assert all(re.search(rf"^  {u} +restarted", upgrade.stdout, re.MULTILINE) for u in UNITS), upgrade.stdout
    assert all(pids[u] != (root / "fake-systemd" / f"{u}.pid").read_text() for u in UNITS)
    assert "# the next release" in (srv / "app" / "anyon" / "__init__.py").read_text()
    assert "All required checks passed." in upgrade.stdout

    run_an_attempt(ctl, env, database_url)

    backup = run([*ctl, "backup"], env)
    assert backup.returncode == 0, backup.stderr
    (dump,) = (srv / "backups").glob(f"{NAME}-*.tar")
    assert dump.stat().st_mode & 0o777 == 0o600 and dump.stat().st_uid == 0
    secret_key = re.search(r"^ANYON_SECRET_KEY=(\S+)$", settings, re.MULTILINE).group(1)
    assert secret_key.encode() not in dump.read_bytes()
    assert run([*ctl, "manage", "createsuperuser", "--noinput", "--username", "later", "--email", "later@example.com"],
               env).returncode == 0  # fmt: skip

    # Restore while the services run: manage.py alone refuses (they hold the database); anyon-ctl stops all three.
    refused = subprocess.run([*ctl, "manage", "restore", "-"], stdin=dump.open("rb"), env=env, capture_output=True,
                             text=True, check=False)  # fmt: skip
    assert refused.returncode == 1 and "the database is in use" in refused.stderr, refused.stderr
    calls = root / "fake-systemd" / "calls.log"
    calls.write_text("")
    restored = run([*ctl, "restore", str(dump)], env)
    assert restored.returncode == 0, restored.stdout[-3000:] + restored.stderr[-3000:]
    assert f"stop {UNITS[2]} {UNITS[1]} {UNITS[0]}" in calls.read_text()  # web, worker AND the egress proxy
    assert "All required checks passed." in restored.stdout
    assert psql("SELECT count(*) FROM auth_user WHERE username = 'later'", DB) == "0"

    # A restore that is refused leaves the database as it was and the services running again.
    garbage = root / "garbage.tar"
    garbage.write_bytes(b"not a backup" * 100)
    failed = run([*ctl, "restore", str(garbage)], env)
    assert failed.returncode == 1 and "nothing was changed; starting" in failed.stderr, failed.stderr
    active = run([str(FAKE_SYSTEMCTL), "is-active", *UNITS], env)
    assert active.returncode == 0, active.stdout

    # Into a fresh, empty database (a new host, or a database lost): the same backup, then the app works again.
    assert run([*ctl, "stop"], env).returncode == 0
    psql(f'DROP DATABASE "{DB}"')
    psql(f'CREATE DATABASE "{DB}" OWNER "{DB}"')
    fresh = run([*ctl, "restore", str(dump)], env)
    assert fresh.returncode == 0 and "start the services" in fresh.stdout, fresh.stderr
    assert run([*ctl, "start"], env).returncode == 0
    doctor = wait_for(lambda: (d := run([*ctl, "doctor"], env)).returncode == 0 and d, "doctor passing")
    assert "All required checks passed." in doctor.stdout
    assert psql("SELECT count(*) FROM auth_user WHERE username IN ('admin', 'deployed')", DB) == "2"
    run_an_attempt(ctl, env, database_url)


def test_a_second_installation_on_the_embedded_default_beside_the_first(host):
    """Another ANYON_INSTANCE on the same host: its own user, settings, units and port; SQLite and no Redis; installed
    twice without a change; backed up and restored with the SQLite backup API, its services stopped and started."""
    root, env = host["root"], host["env"]
    name = f"anyon-{EMBEDDED}"
    ctl = [str(root / "usr/local/sbin" / f"{name}-ctl")]
    port = free_port()
    argv = [str(ROOT / "deploy" / "install.sh"), "--instance", EMBEDDED, "--root", str(root), "--embedded",
            "--no-nginx", "--skip-image", "--server-name", "sqlite.anyon-ci.test", "--port", str(port)]  # fmt: skip
    first = run(argv, env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert re.search(r"^  cache table +created", first.stdout, re.MULTILINE)
    assert "All required checks passed." in first.stdout
    settings = (root / "etc" / name / "env").read_text()
    assert "DATABASE_URL" not in settings and "REDIS_URL" not in settings and f"ANYON_INSTANCE={EMBEDDED}" in settings
    second = run(argv, env)
    items = [line for line in second.stdout.splitlines() if re.match(r"  \S", line)]
    assert second.returncode == 0 and all(" unchanged" in line for line in items), "\n".join(items)
    assert "Done: nothing changed." in second.stdout

    taken = run([*argv[:2], "third", *argv[3:]], env)  # a third installation may not take the same port
    assert taken.returncode == 1 and f"port {port} is taken" in taken.stderr
    assert not (root / "etc" / "anyon-third").exists() and subprocess.run(["id", "anyon-third"]).returncode != 0

    database = root / "srv" / name / "data" / "anyon.sqlite3"
    assert database.stat().st_mode & 0o777 == 0o600 and database.stat().st_uid == pwd.getpwnam(name).pw_uid
    assert run([*ctl, "backup"], env).returncode == 0
    (dump,) = (root / "srv" / name / "backups").glob("*.tar")
    assert run([*ctl, "manage", "createsuperuser", "--noinput", "--username", "later", "--email", "later@example.com"],
               env).returncode == 0  # fmt: skip
    restored = run([*ctl, "restore", str(dump)], env)
    assert restored.returncode == 0, restored.stdout[-3000:] + restored.stderr[-3000:]
    assert "restored: engine sqlite" in restored.stdout and "All required checks passed." in restored.stdout
    users = run([*ctl, "manage", "shell", "-v", "0", "-c",
                 "from django.contrib.auth.models import User; print(User.objects.filter(username='later').count())"],
                env)  # fmt: skip
    assert users.stdout.strip().splitlines()[-1] == "0"
