"""Run a management command with the services' own settings: the settings file systemd gives them
(``EnvironmentFile=``, ``ANYON_ENV_FILE`` or ``/etc/anyon/env``), not whatever the operator's shell holds.

Used before Django reads its settings (``manage.py``), so the command cannot open another database or use another
key than the services do. Only ``rotate_secret_key`` asks for it: the commands an operator runs to look
(``doctor``) report what they are given.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from shared.env_file import read_env_file

DEFAULT_ENV_FILE = "/etc/anyon/env"
LOADED = "ANYON_ENV_FILE_LOADED"
COMMANDS = ("rotate_secret_key",)
#: What a service has besides its settings file (systemd sets a bare environment), and how the command is told
#: what to do without a command-line argument (the new key's variable).
KEPT = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TERM", "DJANGO_SETTINGS_MODULE", "PYTHONPATH", "VIRTUAL_ENV")
KEPT_PREFIXED = ("ANYON_NEW_SECRET_KEY", "ANYON_OLD_SECRET_KEY")


def env_file_of(argv: list[str], environ: dict[str, str]) -> Path | None:
    """The settings file the command is to use: ``--env-file PATH``, else ``ANYON_ENV_FILE`` (``/etc/anyon/env``)
    when it exists; None with ``--no-env-file`` or when there is none."""
    for index, arg in enumerate(argv):
        if arg == "--no-env-file":
            return None
        if arg == "--env-file" and index + 1 < len(argv):
            return Path(argv[index + 1])
        if arg.startswith("--env-file="):
            return Path(arg.split("=", 1)[1])
    named = Path(environ.get("ANYON_ENV_FILE") or DEFAULT_ENV_FILE)
    return named if named.exists() else None


def services_environment(path: Path, environ: dict[str, str]) -> dict[str, str]:
    """A service's environment: the settings file over a bare environment, as systemd builds it."""
    env = {name: environ[name] for name in (*KEPT, *KEPT_PREFIXED) if name in environ}
    env.update(read_env_file(path))
    env.update({LOADED: str(path), "ANYON_ENV_FILE": str(path)})
    return env


def exec_with_services_env(argv: list[str]) -> None:
    """For the commands that must see the services' settings: re-execute this process with them (once; returns
    when they are loaded already, or when there is no settings file). Exits 2 when the file cannot be read."""
    if len(argv) < 2 or argv[1] not in COMMANDS:
        return
    path = env_file_of(argv[2:], dict(os.environ))
    if path is None or os.environ.get(LOADED) == str(path):
        return
    try:
        env = services_environment(path, dict(os.environ))
    except OSError as exc:
        sys.stderr.write(
            f"Cannot read the services' settings file {path}: {exc.strerror}. Run this as root or as the services' "
            "user (sudo -u anyon …), or name another file with --env-file.\n"
        )
        raise SystemExit(2) from exc
    sys.stdout.write(f"Using the services' settings from {path}\n")
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, *argv], env)  # noqa: S606 - the same command, other settings
