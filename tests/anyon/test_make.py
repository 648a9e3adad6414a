"""``make run``'s install step: a half-made virtualenv is rebuilt, a missing python3-venv is named."""

from __future__ import annotations

import subprocess

from tests.fixtures.processes import ROOT


def make_install(tmp_path, python: str) -> subprocess.CompletedProcess:
    venv = tmp_path / "venv"
    return subprocess.run(
        ["make", "-s", f"VENV={venv}", f"PYTHON={python}", f"{venv}/.installed"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_half_made_venv_is_rebuilt_and_a_missing_venv_module_is_named(tmp_path):
    half = tmp_path / "venv" / "bin"
    half.mkdir(parents=True)
    (half / "python").write_text("#!/bin/sh\nexit 1\n")  # what a failed `python3 -m venv` leaves: no pip inside
    (half / "python").chmod(0o755)
    no_venv_module = tmp_path / "python3"
    no_venv_module.write_text("#!/bin/sh\necho 'The virtual environment was not created successfully' >&2\nexit 1\n")
    no_venv_module.chmod(0o755)
    result = make_install(tmp_path, str(no_venv_module))
    assert result.returncode != 0
    assert "is incomplete (an earlier install failed): rebuilding it" in result.stdout
    assert "install python3-venv" in result.stdout + result.stderr
    assert not (tmp_path / "venv").exists()  # nothing half-made is left for the next run to trust
