"""The host directory under which per-attempt secret dirs live (ANYON_TEMP_DIR)."""

from __future__ import annotations

import os
from pathlib import Path


def ensure_temp_dir(path: Path) -> Path:
    """Create ``path`` if missing and force mode 0700: it holds plaintext secrets while runs are active."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path
