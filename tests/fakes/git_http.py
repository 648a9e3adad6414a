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
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.fakes.http_server import FakeHTTPServer, Recorded, Reply

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


@dataclass(frozen=True)
class GitRequest:
    method: str
    path: str
    query: str
    username: str | None
    auth_ok: bool
    status: int


class FakeGitHTTPServer(FakeHTTPServer):
    """Serve the bare repository ``repo_dir`` at ``url`` (``http://127.0.0.1:<port>/<repo path>``).

    The repository path is ``repo_dir`` relative to ``project_root`` (default: its parent, so just its name); a
    ``project_root`` two levels up serves it GitHub-style as ``/<owner>/<repo>.git``.
    """

    def __init__(self, repo_dir: Path | str, token: str, project_root: Path | str | None = None) -> None:
        super().__init__()
        self.repo_dir = Path(repo_dir).resolve()
        self.project_root = Path(project_root).resolve() if project_root else self.repo_dir.parent
        self.repo_path = self.repo_dir.relative_to(self.project_root).as_posix()
        self.token = token
        self._git: list[GitRequest] = []
        self.base_url = self.url
        self.url = f"{self.base_url}/{self.repo_path}"

    @property
    def requests(self) -> list[GitRequest]:  # type: ignore[override]
        with self.lock:
            return list(self._git)

    def _check(self, authorization: str | None) -> tuple[str | None, bool]:
        """(username, ok) of a Basic ``Authorization`` header; the password must equal the token."""
        username, password = basic_credentials(authorization)
        return username, password is not None and hmac.compare_digest(password.encode(), self.token.encode())

    def handle(self, request: Recorded) -> Reply:
        username, ok = self._check(request.headers.get("authorization"))
        if not ok:
            reply = Reply(401, b"auth required\n", {"WWW-Authenticate": 'Basic realm="anyon-test-git"'})
        elif not request.path.startswith(f"/{self.repo_path}/"):
            reply = Reply(404, b"no such repository\n", {"Content-Type": "text/plain"})
        else:
            status, headers, payload = http_backend(
                self.project_root, request.method, request.path, request.raw_query, CgiHeaders(request.headers),
                request.body, username or "",
            )  # fmt: skip
            reply = Reply(status, payload, dict(headers))
        with self.lock:
            self._git.append(GitRequest(request.method, request.path, request.raw_query, username, ok, reply.status))
        return reply


class CgiHeaders(dict):
    """Case-insensitive ``get`` over recorded (lower-cased) headers, as ``http_backend`` expects."""

    def get(self, key, default=None):
        return super().get(key.lower(), default)
