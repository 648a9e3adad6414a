"""The runtime image, tested on the real engine: tools and versions, and what it does *not* contain."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
from django.conf import settings

from tests.runtime_image.support import DOCKERFILE, ROOT, dockerfile_arg, run_exec

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
    assert dockerfile_arg("CLAUDE_CODE_VERSION") == "2.0.31"


def test_versions_are_pinned_only_in_the_dockerfile():
    build_sh = (ROOT / "runtime-image" / "build.sh").read_text()
    for name in re.findall(r"^ARG ([A-Z_]+_VERSION)=", DOCKERFILE.read_text(), re.MULTILINE):
        value = dockerfile_arg(name)
        if len(value) > 4:
            assert value not in build_sh, f"build.sh repeats the value of {name}"


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shell_scripts_pass_shellcheck():
    scripts = [
        ROOT / "runtime-image" / "build.sh",
        ROOT / "runtime-image" / "files" / "anyon-exec",
        ROOT / "runtime-image" / "files" / "anyon-git-credential",
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
    assert claude.split()[0] == dockerfile_arg("CLAUDE_CODE_VERSION") == "2.0.31"
    assert re.match(r"v18\.\d+\.\d+$", _ok(docker_client, idle_container, "node", "--version"))
    assert _ok(docker_client, idle_container, "npm", "--version") == dockerfile_arg("NPM_VERSION")
    assert _ok(docker_client, idle_container, "git", "--version").startswith("git version 2.")
    assert _ok(docker_client, idle_container, "gh", "--version").startswith("gh version 2.")
    assert _ok(docker_client, idle_container, "gcc", "--version")
    assert _ok(docker_client, idle_container, "make", "--version")


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
    assert _ok(docker_client, idle_container, "id", "-u") == "1000"
    assert _ok(docker_client, idle_container, "id", "-un") == "anyon"
    assert _ok(docker_client, idle_container, "bash", "-c", 'echo "$HOME $PWD"') == "/home/anyon /workspace"
    assert _ok(docker_client, idle_container, "stat", "-c", "%u %U", "/workspace") == "1000 anyon"
    assert _ok(docker_client, idle_container, "stat", "-c", "%u", "/home/anyon") == "1000"
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
        "ls -d /root/.npm /home/anyon/.npm /root/.cache /home/anyon/.cache /tmp/* 2>/dev/null; true",
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
