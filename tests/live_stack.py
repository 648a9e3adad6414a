"""A whole Anyon stack for standalone scripts (``make bench``, ``make screenshots``): a temp SQLite database,
a daphne web process and a worker, with the environment set before Django starts."""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def configure(prefix: str, **env: str) -> Path:
    """Set the environment of a standalone script (call before ``django.setup()``); returns its work dir."""
    work = Path(tempfile.mkdtemp(prefix=f"anyon-{prefix}-"))
    defaults = {
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"sqlite:///{work / 'db.sqlite3'}",
        "ANYON_TEMP_DIR": str(work / "tmp"),
        "ANYON_INSTANCE": f"{prefix}-{os.getpid()}",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DEBUG": "false",
        "ANYON_SECRET_KEY": f"{prefix}-secret-key-" + "s" * 40,
        "ANYON_SECURE_COOKIES": "false",
    }
    os.environ.update({**defaults, **env})
    sys.path.insert(0, str(ROOT))
    return work


class LiveStack:
    def __init__(self, name: str, *, worker: bool = True) -> None:
        from django.core.management import call_command

        from tests.fixtures.processes import start_asgi, start_process

        call_command("migrate", verbosity=0)
        call_command("createcachetable", verbosity=0)
        env = dict(os.environ)
        self.web = start_asgi(f"{name}-web", env)
        self.egress = None
        if env.get("ANYON_CREDENTIAL_MODE") == "sealed":  # sealed runs need this host's egress proxy
            self.egress = start_process(f"{name}-egress", [sys.executable, "manage.py", "egress_proxy"], env)
        self.worker = (
            start_process(f"{name}-worker", [sys.executable, "manage.py", "qcluster"], env) if worker else None
        )
        self.url = self.web.url
        self.ws_url = self.web.url.replace("http://", "ws://", 1)
        if worker:
            time.sleep(3)  # the worker cluster starts

    def login_session(self, username: str, password: str):
        import requests

        session = requests.Session()
        session.get(f"{self.url}/login/")
        session.post(
            f"{self.url}/login/",
            data={"username": username, "password": password, "csrfmiddlewaretoken": session.cookies["csrftoken"]},
            headers={"Referer": f"{self.url}/login/"},
        )
        return session

    def stop(self) -> None:
        self.web.stop()
        if self.egress:
            self.egress.stop()
        if self.worker:
            self.worker.stop()


#: What decides how the pictures of docs/screenshots look: templates and static files, and the Python that renders
#: them (views, forms, the admin, template tags, models' verbose names and choices, the banner, the agent's log lines)
#: and the script that takes them. A change to any of these asks for ``make screenshots``.
UI_SOURCES = (
    "templates/**/*",
    "static/**/*",
    "*/views.py",
    "*/forms.py",
    "*/admin.py",
    "*/models.py",
    "*/templatetags/*.py",
    "anyon/context_processors.py",
    "execution/web/views.py",
    "execution/web/forms.py",
    "secrets_app/selectors.py",
    "execution/logs/claude_events.py",
    "tests/screenshots.py",
)
UI_PACKAGES = ("anyon", "execution", "secrets_app", "shared")


def ui_source_files() -> list[Path]:
    files = {
        path
        for pattern in UI_SOURCES
        for path in ROOT.glob(pattern)
        if path.is_file() and "__pycache__" not in path.parts
        and (not pattern.startswith("*/") or path.relative_to(ROOT).parts[0] in UI_PACKAGES)
    }  # fmt: skip
    return sorted(files)


def ui_source_hash() -> str:
    """A hash of everything that decides how the screenshots look (``UI_SOURCES``)."""
    digest = hashlib.sha256()
    for path in ui_source_files():
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()
