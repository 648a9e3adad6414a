"""The deploy scripts: shellcheck clean, and what they refuse before they change anything."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.fixtures.processes import ROOT

SCRIPTS = [ROOT / "deploy" / name for name in ("install.sh", "anyon-ctl", "lib.sh", "redis.sh")]


def test_deploy_scripts_pass_shellcheck():
    if not shutil.which("shellcheck"):
        pytest.skip("shellcheck is not installed (apt-get install shellcheck; CI installs it)")
    done = subprocess.run(
        ["shellcheck", "--external-sources", *map(str, SCRIPTS)], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout


def test_install_refuses_bad_options_before_doing_anything(tmp_path):
    def install(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(ROOT / "deploy" / "install.sh"), "--root", str(tmp_path), *argv],
            capture_output=True, text=True, check=False, timeout=30,
        )  # fmt: skip

    assert install("--frobnicate").returncode == 2
    bad = install("--instance", "../etc")
    assert bad.returncode == 1 and "use 1-63 letters" in bad.stderr
    if os.geteuid() == 0:
        half = install("--instance", "x", "--tls-cert", "/nonexistent.crt")
        assert half.returncode == 2 and "--tls-cert and --tls-key go together" in half.stderr
    assert list(tmp_path.iterdir()) == []  # nothing was written


def test_anyon_ctl_says_when_there_is_no_installation(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("anyon-ctl runs as root")
    done = subprocess.run(
        [str(ROOT / "deploy" / "anyon-ctl"), "--root", str(tmp_path), "doctor"], capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    assert done.returncode == 1 and "no installation 'default' here" in done.stderr
