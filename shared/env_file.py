"""The services' settings file (``/etc/anyon/env``, systemd's ``EnvironmentFile=``): read and changed the way systemd
and ``set -a; . FILE`` both understand it, so a command can use exactly the settings the services run with.

Lines are ``NAME=value``, optionally ``export NAME=value``, the value optionally in single or double quotes;
blank lines and lines starting with ``#`` or ``;`` are comments.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        inner = value[1:-1]
        return inner if value[0] == "'" else re.sub(r'\\(["\\$`])', r"\1", inner)
    return value


def read_env_file(path: Path) -> dict[str, str]:
    """The variables of ``path`` (raises OSError when it cannot be read)."""
    found: dict[str, str] = {}
    for line in Path(path).read_text().splitlines():
        if not line.strip() or line.lstrip().startswith(("#", ";")):
            continue
        match = _LINE.match(line)
        if match:
            found[match[1]] = _unquote(match[2])
    return found


def set_in_env_file(path: Path, name: str, value: str) -> None:
    """Set ``name`` to ``value`` in ``path`` (replacing its line, else appending one), atomically: the new content is
    written beside it with the same mode, owner and group, then renamed over it. The value must need no quoting."""
    if not re.fullmatch(r"[A-Za-z0-9_.~+/=@%:,-]+", value):
        raise ValueError(f"{name}: the value has characters the settings file would need quoted")
    path = Path(path)
    info = path.stat()
    lines, replaced = path.read_text().splitlines(), False
    for index, line in enumerate(lines):
        match = _LINE.match(line)
        if match and match[1] == name:
            lines[index] = f"{name}={value}" if not replaced else f"# {name}=… (an earlier line set it)"
            replaced = True
    if not replaced:
        lines.append(f"{name}={value}")
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as out:
            out.write("\n".join(lines) + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, info.st_mode & 0o7777)
        if (info.st_uid, info.st_gid) != (os.geteuid(), os.getegid()):
            os.chown(temporary, info.st_uid, info.st_gid)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
