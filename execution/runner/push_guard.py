"""Before a push (both modes): the commits about to leave are searched for the user's credentials, their encodings
and token-shaped strings. A hit refuses the push; nothing leaves.

The range is ``base..head`` as Anyon recorded them (the base when the clone ended, the head whose diff the user
saw), read by Anyon's own git (execution/git/anyon_git.py): no ref the agent can move, no replace object, no textconv.
What it sees: every commit message, author line and patch of the range, binary files as their raw bytes. What it
cannot see: a value that is not there literally or in one of the masker's encodings, e.g. inside a gzip'd or
otherwise compressed, encrypted or split file. It catches accidents; a determined agent can always encode a value
it can read, which is why sealed mode keeps every credential out of the container."""

from __future__ import annotations

import codecs

from django.conf import settings

from execution.git import anyon_git
from execution.runner.workspace import own_exec_environment
from shared.docker.engine import DockerEngine, ExecResult
from shared.masking import Masker


def refusal(*, engine: DockerEngine, container_id: str, masker: Masker, base: str, head: str) -> str:
    """``""`` when the commits ``base..head`` (all of ``head``'s history without a base) are clean; otherwise why
    the push is refused."""
    result = ExecResult()
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    overlap = max(masker.max_variant, 300)  # a value split across two chunks is still found
    tail, found = "", ""
    for stream, data in engine.exec_stream(
        container_id,
        anyon_git.guard_argv(base, head),
        result,
        environment=own_exec_environment(),
        user=str(settings.ANYON_CONTAINER_UID),
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
