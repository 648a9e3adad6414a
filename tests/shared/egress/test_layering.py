"""``shared`` is the bottom layer: importing the egress proxy loads neither the apps nor Django."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CHECK = """
import sys
import shared.egress, shared.egress.__main__
loaded = sorted({name.split(".")[0] for name in sys.modules} & {"anyon", "execution", "secrets_app", "django"})
print(",".join(loaded))
"""


def test_shared_egress_imports_no_app_and_no_django():
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run(
        [sys.executable, "-c", CHECK], cwd=root, capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == ""
