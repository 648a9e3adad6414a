"""The runtime image, tested on the real engine: tools and versions, and what it does *not* contain."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest
from django.conf import settings

from tests.fakes.anthropic_api import FakeAnthropicAPI
from tests.runtime_image.support import CONTAINER_UID, DOCKERFILE, ROOT, dockerfile_arg, run_exec

TOKEN_PATTERNS = (
    r"(ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,}",
    r"github_pat_[A-Za-z0-9_]{22,}",
    r"sk-ant-(api03|admin01|oat01|ort01)-[A-Za-z0-9_-]{20,}",
    r"x-access-token:[^@[:space:]]+@",
)


# --- static checks of the build definition (no engine needed) ------------------------------------------------
def test_image_version_is_the_single_source_of_the_default_image_tag():
    version = dockerfile_arg("IMAGE_VERSION")
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    assert version == settings.ANYON_RUNTIME_IMAGE_VERSION
    assert re.fullmatch(r"\d+\.\d+\.\d+", dockerfile_arg("CLAUDE_CODE_VERSION"))
    for arch in ("AMD64", "ARM64"):  # npm dist.integrity of the platform package, verified during the build
        assert re.fullmatch(r"sha512-[A-Za-z0-9+/]{86}==", dockerfile_arg(f"CLAUDE_CODE_INTEGRITY_{arch}"))


def test_container_uid_default_matches_the_image():
    """The worker chowns secret dirs to ANYON_CONTAINER_UID: its default is the image's CONTAINER_UID."""
    assert dockerfile_arg("CONTAINER_UID") == "61000"
    if "ANYON_CONTAINER_UID" not in os.environ:
        assert settings.ANYON_CONTAINER_UID == settings.ANYON_CONTAINER_GID == 61000


def test_versions_are_pinned_only_in_the_dockerfile():
    build_sh = (ROOT / "runtime-image" / "build.sh").read_text()
    for name in re.findall(r"^ARG ([A-Z_]+_VERSION)=", DOCKERFILE.read_text(), re.MULTILINE):
        value = dockerfile_arg(name)
        if len(value) > 4:
            assert value not in build_sh, f"build.sh repeats the value of {name}"


def test_shell_scripts_pass_shellcheck():
    scripts = [
        ROOT / "runtime-image" / "build.sh",
        ROOT / "runtime-image" / "bootstrap-base.sh",
        ROOT / "runtime-image" / "builder" / "fetch-claude",
        ROOT / "runtime-image" / "files" / "anyon-exec",
        ROOT / "runtime-image" / "files" / "anyon-git-credential",
        ROOT / "runtime-image" / "files" / "anyon-egress-bridge",
    ]
    done = subprocess.run(["shellcheck", *map(str, scripts)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout


# --- inside the image -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def idle_container(docker_client, runtime_image):
    """One container of the image without network or secrets, shared by the read-only checks below."""
    container = docker_client.containers.run(
        runtime_image,
        detach=True,
        init=True,
        network_mode="none",
        labels={"anyon.test": "1"},
    )
    yield container
    container.remove(force=True)


def _ok(docker_client, container, *argv: str, user: str = "") -> str:
    result = run_exec(docker_client, container, list(argv), user=user)
    assert result.exit_code == 0, f"{argv} failed ({result.exit_code}): {result.stderr}"
    return result.stdout.strip()


@pytest.mark.docker
def test_tool_versions(docker_client, idle_container):
    claude = _ok(docker_client, idle_container, "claude", "--version")
    assert claude == f"{dockerfile_arg('CLAUDE_CODE_VERSION')} (Claude Code)"
    assert _ok(docker_client, idle_container, "node", "--version") == f"v{dockerfile_arg('NODEJS_VERSION')}"
    assert re.fullmatch(r"\d+\.\d+\.\d+", _ok(docker_client, idle_container, "npm", "--version"))
    assert _ok(docker_client, idle_container, "npx", "--version")
    assert _ok(docker_client, idle_container, "git", "--version").startswith("git version 2.")
    assert _ok(docker_client, idle_container, "gh", "--version").startswith("gh version 2.")
    assert _ok(docker_client, idle_container, "python3", "--version").startswith("Python 3.")
    assert _ok(docker_client, idle_container, "gcc", "--version")
    assert _ok(docker_client, idle_container, "make", "--version")


@pytest.mark.docker
def test_tools_agents_reach_for(docker_client, idle_container):
    for tool in ("xxd", "jq", "rg", "unzip", "curl", "ps", "less", "socat", "g++", "perl"):
        _ok(docker_client, idle_container, "bash", "-c", f"command -v {tool}")
    assert _ok(docker_client, idle_container, "bash", "-c", "printf hi | xxd -p") == "6869"
    assert _ok(docker_client, idle_container, "bash", "-c", "echo '{\"a\": 1}' | jq .a") == "1"


#: In a fresh venv: pip's CA bundle, then an install through a proxy named by HTTPS_PROXY alone (a listener on the
#: container's loopback that prints the first line it gets and closes).
PIP_IN_A_VENV = """
python3 -m venv /tmp/venv
/tmp/venv/bin/python -c 'import os, pip._vendor.certifi as c; print("bundle", c.where(), os.environ["PIP_CERT"])'
python3 -c '
import socket
s = socket.create_server(("127.0.0.1", 3128)); print("listening", flush=True); c, _ = s.accept()
print("proxy got", c.recv(200).split(b"\\r\\n")[0].decode(), flush=True)' > /tmp/proxy.log &
until grep -q listening /tmp/proxy.log 2>/dev/null; do sleep 0.1; done
HTTPS_PROXY=http://127.0.0.1:3128 /tmp/venv/bin/pip download -q --retries 0 --timeout 5 --no-deps -d /tmp/dl \
  --index-url https://pypi.example.com/simple/ anything >/dev/null 2>&1 || true
wait; cat /tmp/proxy.log; rm -rf /tmp/venv /tmp/dl /tmp/proxy.log
"""


@pytest.mark.docker
def test_pip_in_a_venv_trusts_the_system_store_and_takes_the_proxy_from_the_environment(docker_client, idle_container):
    """Setup scripts install Python dependencies: ``python3 -m venv`` and pip are there; pip checks TLS against the
    system store (with build.sh's extra CAs), as curl and git do, and goes through HTTPS_PROXY."""
    assert _ok(docker_client, idle_container, "python3", "-m", "pip", "--version").startswith(
        f"pip {dockerfile_arg('PYTHON3_PIP_VERSION').rstrip('*')}"
    )
    out = _ok(docker_client, idle_container, "bash", "-c", PIP_IN_A_VENV).splitlines()
    assert "bundle /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt" in out
    assert any(line.startswith("proxy got CONNECT pypi.example.com:443 HTTP/1.") for line in out), out


#: A PATH without Node: /usr/local/bin (where node lives) is left out; the CLI is called by its full path.
NO_NODE_PATH = "/usr/bin:/bin"


@pytest.mark.docker
def test_cli_is_native_and_starts_without_node_or_credentials(docker_client, idle_container):
    """The pinned CLI is the native binary: it starts with no Node on PATH and an empty HOME (no credential
    store, no ~/.claude.json), and `claude --version` there is the pinned version."""
    script = (
        'test -z "$(command -v node)" || exit 9; '
        "h=$(mktemp -d); HOME=$h /opt/claude/bin/claude --version; "
        'ls -A "$h"/.claude 2>/dev/null | grep -qx .credentials.json && exit 8; rm -rf "$h"'
    )
    out = run_exec(docker_client, idle_container, ["/bin/bash", "-c", script], environment={"PATH": NO_NODE_PATH})
    assert out.exit_code == 0, out.stderr
    assert out.stdout.strip() == f"{dockerfile_arg('CLAUDE_CODE_VERSION')} (Claude Code)"
    assert _ok(docker_client, idle_container, "cat", "/opt/claude/LAYOUT") == "native"
    assert (
        _ok(docker_client, idle_container, "bash", "-c", "head -c4 /opt/claude/bin/claude | od -An -c | tr -d ' '")
        == "177ELF"
    )
    assert _ok(docker_client, idle_container, "readlink", "-f", "/usr/local/bin/claude") == "/opt/claude/bin/claude"


@pytest.mark.docker
def test_cli_answers_a_prompt_without_node(docker_client, runtime_image):
    """A real `claude -p` run with no Node on PATH and only an API key placeholder in the environment reaches
    the (fake) API and prints its result: nothing else is needed to start it."""
    with FakeAnthropicAPI("pong-without-node") as api:
        out = docker_client.containers.run(
            runtime_image,
            ["/opt/claude/bin/claude", "-p", "ping", "--output-format", "json"],
            environment={
                "PATH": NO_NODE_PATH,
                "ANTHROPIC_BASE_URL": api.url,
                "ANTHROPIC_API_KEY": "sk-ant-api03-placeholder-not-a-key",
            },
            network_mode="host",
            remove=True,
            labels={"anyon.test": "1"},
        )
        assert api.credentials() == {"sk-ant-api03-placeholder-not-a-key"}
    result = json.loads(out.decode().strip().splitlines()[-1])
    assert result["type"] == "result" and result["is_error"] is False and result["result"] == "pong-without-node"


@pytest.mark.docker
def test_image_metadata(docker_client, runtime_image):
    image = docker_client.images.get(runtime_image)
    config = image.attrs["Config"]
    assert config["User"] == "anyon"
    assert config["WorkingDir"] == "/workspace"
    assert config["Labels"]["org.opencontainers.image.version"] == dockerfile_arg("IMAGE_VERSION")
    assert config["Labels"]["io.anyon.versions.claude-code"] == dockerfile_arg("CLAUDE_CODE_VERSION")
    env_names = {item.split("=", 1)[0] for item in config.get("Env") or []}
    assert not env_names & {"GH_TOKEN", "GITHUB_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_API_KEY"}


@pytest.mark.docker
def test_non_root_user_home_and_workspace(docker_client, idle_container):
    assert _ok(docker_client, idle_container, "id", "-u") == str(CONTAINER_UID)
    assert _ok(docker_client, idle_container, "id", "-g") == str(CONTAINER_UID)
    assert _ok(docker_client, idle_container, "id", "-un") == "anyon"
    assert _ok(docker_client, idle_container, "bash", "-c", 'echo "$HOME $PWD"') == "/home/anyon /workspace"
    assert _ok(docker_client, idle_container, "stat", "-c", "%u %U", "/workspace") == f"{CONTAINER_UID} anyon"
    assert _ok(docker_client, idle_container, "stat", "-c", "%u", "/home/anyon") == str(CONTAINER_UID)
    # (The CLI adds its own keys once it has run in this shared container.)
    claude_json = json.loads(_ok(docker_client, idle_container, "cat", "/home/anyon/.claude.json"))
    assert claude_json["hasCompletedOnboarding"] is True


@pytest.mark.docker
def test_no_credential_store_configured(docker_client, idle_container):
    helpers = _ok(docker_client, idle_container, "git", "config", "--show-origin", "--get-all", "credential.helper")
    # The only helper is the image's own, system-wide one, which reads the mounted file and never stores.
    assert helpers.splitlines() == ["file:/etc/gitconfig\t/usr/local/bin/anyon-git-credential"]
    found = run_exec(
        docker_client,
        idle_container,
        ["grep", "-rIlsE", r"helper\s*=?\s*(store|cache)|credential-(store|cache)", "/etc", "/home/anyon", "/root"],
        user="root",
    )
    assert found.exit_code == 1, f"credential store/cache configured in: {found.stdout}"
    # A stored-credentials file of git would be here.
    assert run_exec(docker_client, idle_container, ["test", "-e", "/home/anyon/.git-credentials"]).exit_code == 1


@pytest.mark.docker
def test_no_token_baked_into_the_image(docker_client, idle_container):
    for pattern in TOKEN_PATTERNS:
        found = run_exec(
            docker_client,
            idle_container,
            ["grep", "-rIlsE", pattern, "/home/anyon", "/workspace", "/etc", "/root", "/tmp"],
            user="root",
        )
        assert found.exit_code == 1, f"files match {pattern}: {found.stdout}"
    env = _ok(docker_client, idle_container, "env")
    for name in ("GH_TOKEN", "GITHUB_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_API_KEY"):
        assert f"{name}=" not in env


@pytest.mark.docker
def test_no_apt_lists_or_npm_caches(docker_client, idle_container):
    leftovers = _ok(
        docker_client,
        idle_container,
        "bash",
        "-c",
        "find /var/lib/apt/lists -mindepth 1 -not -name lock -not -name partial; "
        # (npm of test_tool_versions leaves Node's compile cache in this shared container's /tmp: not the image's)
        "ls -d /root/.npm /home/anyon/.npm /root/.cache /home/anyon/.cache 2>/dev/null; "
        "find /tmp -mindepth 1 -maxdepth 1 ! -name node-compile-cache; true",
        user="root",
    )
    assert leftovers == ""


@pytest.mark.docker
def test_extra_ca_certificates_are_trusted(docker_client, idle_container):
    """build.sh adds the host's extra CAs (the proxy CA here) to the system store that node/npm/git use."""
    from pathlib import Path

    host_cas = sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))
    if not host_cas:
        pytest.skip("this host has no extra CA certificates")
    bundle = _ok(docker_client, idle_container, "cat", "/etc/ssl/certs/ca-certificates.crt")
    for ca in host_cas:
        body = "".join(ca.read_text().split("-----")[2].split())  # base64 of the first certificate
        assert body[:200] in "".join(bundle.split()), f"{ca.name} missing from the image's CA bundle"
