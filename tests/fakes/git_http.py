"""A git smart-HTTP server on 127.0.0.1 that requires a token, like GitHub's ``https://x-access-token:<token>@``.

Requests are handed to the real ``git http-backend`` (CGI), so clone, fetch, ls-remote and push behave exactly as
against a real server. Every request must carry HTTP Basic auth whose password is the token (any username);
otherwise the answer is ``401`` with ``WWW-Authenticate: Basic``, which is what makes git ask its credential
helper. Push is enabled (``http.receivepack``).

Usage::

    repo = make_bare_repo(tmp_path / "demo.git")
    with FakeGitHTTPServer(repo, token) as server:
        git clone server.url ...
        assert all(r.auth_ok for r in server.requests)
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

_GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Anyon Test",
    "GIT_AUTHOR_EMAIL": "test@anyon.invalid",
    "GIT_COMMITTER_NAME": "Anyon Test",
    "GIT_COMMITTER_EMAIL": "test@anyon.invalid",
}


def _git(*args: str, cwd: Path | None = None) -> str:
    env = {**os.environ, **_GIT_IDENTITY, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
    done = subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True)
    return done.stdout.strip()


def make_bare_repo(path: Path | str, files: dict[str, str] | None = None) -> Path:
    """Create a bare repository at ``path`` whose ``main`` branch has one commit with ``files``."""
    path = Path(path)
    files = files if files is not None else {"README.md": "# demo\n"}
    _git("init", "--quiet", "--bare", "--initial-branch=main", str(path))
    with tempfile.TemporaryDirectory(prefix="anyon-repo-") as tmp:
        work = Path(tmp)
        _git("init", "--quiet", "--initial-branch=main", str(work))
        for name, content in files.items():
            target = work / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        _git("add", "--all", cwd=work)
        _git("commit", "--quiet", "-m", "Initial commit", cwd=work)
        _git("push", "--quiet", str(path), "main:main", cwd=work)
    return path


def head_commit(repo: Path | str, ref: str = "main") -> str:
    """The commit id ``ref`` points at in ``repo`` (bare or not)."""
    return _git("-C", str(repo), "rev-parse", ref)


def basic_credentials(authorization: str | None) -> tuple[str | None, str | None]:
    """(username, password) of an HTTP Basic ``Authorization`` header, or (None, None)."""
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        username, _, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    return username, password


def http_backend(
    project_root: Path, method: str, path_info: str, query: str, headers: Any, body: bytes, user: str
) -> tuple[int, list[tuple[str, str]], bytes]:
    """Run ``git http-backend`` (CGI) for one request under ``project_root``: (status, headers, body)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GIT_PROJECT_ROOT": str(project_root),
        "GIT_HTTP_EXPORT_ALL": "1",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "REQUEST_METHOD": method,
        "PATH_INFO": path_info,
        "QUERY_STRING": query,
        "CONTENT_TYPE": headers.get("Content-Type", ""),
        "CONTENT_LENGTH": str(len(body)),
        "REMOTE_USER": user,
        "REMOTE_ADDR": "127.0.0.1",
        "GATEWAY_INTERFACE": "CGI/1.1",
        "SERVER_PROTOCOL": "HTTP/1.1",
    }
    for name in ("Content-Encoding", "Git-Protocol"):
        value = headers.get(name)
        if value:
            env["HTTP_" + name.upper().replace("-", "_")] = value
    done = subprocess.run(
        ["git", "-c", "http.receivepack=true", "http-backend"],
        input=body,
        env=env,
        capture_output=True,
        check=False,
        timeout=120,
    )
    output = done.stdout
    head, sep, payload = output.partition(b"\r\n\r\n")
    if not sep:
        head, sep, payload = output.partition(b"\n\n")
    status, reply_headers = 200, []
    for line in head.decode("latin-1").splitlines():
        name, _, value = line.partition(":")
        if name.lower() == "status":
            status = int(value.split()[0])
        elif name:
            reply_headers.append((name, value.strip()))
    return status, reply_headers, payload


class _QuietServer(ThreadingHTTPServer):
    """Clients (the CLI, git) may drop a connection early; that is not an error worth a traceback."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@dataclass(frozen=True)
class GitRequest:
    method: str
    path: str
    query: str
    username: str | None
    auth_ok: bool
    status: int


class FakeGitHTTPServer:
    """Serve the bare repository ``repo_dir`` at ``url`` (``http://127.0.0.1:<port>/<repo name>``)."""

    def __init__(self, repo_dir: Path | str, token: str) -> None:
        self.repo_dir = Path(repo_dir).resolve()
        self.token = token
        self._requests: list[GitRequest] = []
        self._lock = threading.Lock()
        self._server = _QuietServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-git-http", daemon=True)
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.url = f"{self.base_url}/{self.repo_dir.name}"

    def __enter__(self) -> FakeGitHTTPServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @property
    def requests(self) -> list[GitRequest]:
        with self._lock:
            return list(self._requests)

    def _check(self, authorization: str | None) -> tuple[str | None, bool]:
        """(username, ok) of a Basic ``Authorization`` header; the password must equal the token."""
        username, password = basic_credentials(authorization)
        return username, password is not None and hmac.compare_digest(password.encode(), self.token.encode())

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":  # large pushes
                    chunks = []
                    while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                        pass
                    return b"".join(chunks)
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _serve(self) -> None:
                body = self._body()
                parts = urlsplit(self.path)
                username, ok = fake._check(self.headers.get("Authorization"))
                status = 401
                prefix = f"/{fake.repo_dir.name}/"
                if not ok:
                    self._reply(401, [("WWW-Authenticate", 'Basic realm="anyon-test-git"')], b"auth required\n")
                elif not parts.path.startswith(prefix):
                    status = 404
                    self._reply(404, [("Content-Type", "text/plain")], b"no such repository\n")
                else:
                    status, headers, payload = http_backend(
                        fake.repo_dir.parent, self.command, parts.path, parts.query, self.headers, body, username or ""
                    )
                    self._reply(status, headers, payload)
                with fake._lock:
                    fake._requests.append(GitRequest(self.command, parts.path, parts.query, username, ok, status))

            do_GET = do_POST = _serve

        return Handler
