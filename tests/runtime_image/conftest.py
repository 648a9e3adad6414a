"""Fixtures of the runtime image tests."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.runtime_image.support import CONTAINER_UID


@pytest.fixture
def secret_dir(tmp_path: Path) -> Callable[..., Path]:
    """Make a per-attempt style secret dir: 0700, files 0400, owned by the container user (CONTAINER_UID)."""
    if os.geteuid() != 0 and os.getuid() != CONTAINER_UID:
        pytest.skip(f"needs root (or uid {CONTAINER_UID}) to give the secret dir to the container user")

    def make(name: str = "secrets", owner: int = CONTAINER_UID, **files: str) -> Path:
        path = tmp_path / name
        path.mkdir(mode=0o700)
        for file_name, value in files.items():
            file = path / file_name
            file.write_text(value)
            file.chmod(0o400)
            if os.geteuid() == 0:
                os.chown(file, owner, owner)
        if os.geteuid() == 0:
            os.chown(path, CONTAINER_UID, CONTAINER_UID)
        return path

    return make
