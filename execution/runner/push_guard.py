"""Before a push (both modes): the commits about to leave are searched for the user's credentials, their encodings
and token-shaped strings. A hit refuses the push; nothing leaves."""

from __future__ import annotations

import codecs

from django.conf import settings

from execution.runner.workspace import exec_environment
from shared.docker.engine import DockerEngine, ExecResult
from shared.masking import Masker

#: Every commit reachable from HEAD that no remote-tracking branch has yet, with its message and whole patch (binary
#: files as text, so a token inside one is found too).
UNPUSHED = [
    "git", "log", "-p", "--text", "--no-color", "--no-ext-diff", "--format=commit %H%n%an <%ae>%n%B",
    "HEAD", "--not", "--remotes",
]  # fmt: skip


def refusal(*, engine: DockerEngine, container_id: str, masker: Masker) -> str:
    """``""`` when the commits to push are clean; otherwise why the push is refused."""
    result = ExecResult()
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    overlap = max(masker.max_variant, 300)  # a value split across two chunks is still found
    tail, found = "", ""
    for stream, data in engine.exec_stream(
        container_id, UNPUSHED, result, environment=exec_environment(), user=str(settings.ANYON_CONTAINER_UID)
    ):
        if stream != "stdout" or found:
            continue  # read to the end either way: the exec's exit code is only known then
        text = tail + decoder.decode(data)
        found = masker.find(text)
        tail = text[-overlap:]
    if not found:
        found = masker.find(tail + decoder.decode(b"", final=True))
    if found:
        return (
            f"Push refused: the commits to push contain {found}. Nothing was pushed. Remove it from the branch's "
            "history (not only from the latest commit), and revoke the credential if it was yours."
        )
    if result.exit_code != 0:
        return (
            f"Push refused: the commits to push could not be checked for secrets (git log exited {result.exit_code})."
        )
    return ""
