#!/usr/bin/env python3
"""A stand-in for ``systemctl`` where systemd is not PID 1 (CI): it starts a unit's service the way systemd would.

Only the units in ``$ANYON_FAKE_SYSTEMD_UNITS`` exist. ``start`` reads the unit file and runs its ``ExecStart`` as
its ``User``/``Group`` (with the user's groups), in its ``WorkingDirectory``, with its ``EnvironmentFile`` parsed as
systemd parses it (not sourced by a shell), ``AmbientCapabilities`` and ``LimitNOFILE``, in a session of its own.
``stop`` sends SIGTERM to the main process and SIGKILL to the rest after ``TimeoutStopSec`` (``KillMode=mixed``).
Pids, logs and every call (``calls.log``) are kept in ``$ANYON_FAKE_SYSTEMD_STATE``. Standard library only: the
install script calls it with the machine's python3.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import resource
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

UNITS = Path(os.environ["ANYON_FAKE_SYSTEMD_UNITS"])
STATE = Path(os.environ["ANYON_FAKE_SYSTEMD_STATE"])


def read_unit(name: str) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for raw in (UNITS / name).read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;[" or "=" not in line:
            continue
        key, value = line.split("=", 1)
        values.setdefault(key.strip(), []).append(value.strip())
    return values


def environment_file(path: str) -> dict[str, str]:
    """systemd's EnvironmentFile: KEY=VALUE lines, # and ; comments, one level of surrounding quotes removed."""
    env = {}
    for raw in Path(path.lstrip("-")).read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;" or "=" not in line:
            continue
        key, value = line.split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key.strip()] = value
    return env


def pid_of(name: str) -> int | None:
    try:
        pid = int((STATE / f"{name}.pid").read_text())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    with contextlib.suppress(OSError):  # a zombie (exited, not yet reaped by init) is not running
        if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
            return None
    return pid


def start(name: str) -> None:
    if pid_of(name):
        return
    unit = read_unit(name)
    user = pwd.getpwnam(unit["User"][-1])
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    env.update(HOME=user.pw_dir, USER=user.pw_name, LOGNAME=user.pw_name, SHELL=user.pw_shell)
    for path in unit.get("EnvironmentFile", []):
        env.update(environment_file(path))
    caps = [c.removeprefix("CAP_").lower() for v in unit.get("AmbientCapabilities", []) for c in v.split()]
    argv = []
    group = unit.get("Group", [user.pw_name])[-1]
    argv += ["setpriv", f"--reuid={user.pw_uid}", f"--regid={group}", "--init-groups"]
    if caps:
        plus = ",".join(f"+{c}" for c in caps)
        argv += [f"--inh-caps=-all,{plus}", f"--ambient-caps={plus}"]
    else:
        argv += ["--inh-caps=-all"]
    argv += shlex.split(unit["ExecStart"][-1])
    log = (STATE / f"{name}.log").open("a")
    nofile = int(unit["LimitNOFILE"][-1]) if "LimitNOFILE" in unit else None

    def limits() -> None:
        if nofile is None:
            return
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
        except (ValueError, OSError):  # no CAP_SYS_RESOURCE in this sandbox (systemd as PID 1 has it): the most allowed
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(nofile, hard), hard))

    proc = subprocess.Popen(
        argv, cwd=unit["WorkingDirectory"][-1], env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        start_new_session=True, preexec_fn=limits,
    )  # fmt: skip
    (STATE / f"{name}.pid").write_text(str(proc.pid))


def stop(name: str) -> None:
    pid = pid_of(name)
    if pid is None:
        return
    timeout = float(read_unit(name).get("TimeoutStopSec", ["90"])[-1].rstrip("s"))
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_of(name):
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)  # what is left of the unit (KillMode=mixed)
    (STATE / f"{name}.pid").unlink(missing_ok=True)


def main(args: list[str]) -> int:
    STATE.mkdir(parents=True, exist_ok=True)
    with (STATE / "calls.log").open("a") as calls:
        calls.write(" ".join(args) + "\n")
    flags = {a for a in args if a.startswith("-")}
    words = [a for a in args if not a.startswith("-")]
    verb, names = words[0], words[1:]
    if verb == "is-system-running":
        print("running")
        return 0
    if verb in ("daemon-reload", "reset-failed"):
        return 0
    unknown = [n for n in names if not (UNITS / n).is_file()]
    if unknown:
        if "--quiet" not in flags:
            print(f"Unit {unknown[0]} not found.", file=sys.stderr)
        return 4 if verb in ("is-active", "is-enabled") else 5
    if verb == "is-active":
        states = ["active" if pid_of(n) else "inactive" for n in names]
        if "--quiet" not in flags:
            print("\n".join(states))
        return 0 if all(s == "active" for s in states) else 3
    if verb == "is-enabled":
        return 0 if all((STATE / f"{n}.enabled").exists() for n in names) else 1
    if verb == "enable":
        for n in names:
            (STATE / f"{n}.enabled").touch()
        return 0
    if verb in ("start", "stop", "restart"):
        for n in names:
            if verb in ("stop", "restart"):
                stop(n)
            if verb in ("start", "restart"):
                start(n)
        return 0
    if verb == "status":
        for n in names:
            print(f"{n}: {'active (running), pid ' + str(pid_of(n)) if pid_of(n) else 'inactive'}")
        return 0
    print(f"fake systemctl: {verb} is not supported", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
