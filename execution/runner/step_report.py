"""The workspace's commits, reported by the last step's own exec when the step ends, so that reading the results
needs no exec of its own (docs/ARCHITECTURE.md, "Data flow of one attempt").

Each ``docker exec`` costs the engine 50-70 ms of CPU (runc starts twice), as much as everything else an attempt
of one short step does. The session's last exec therefore runs its step under a small ``sh`` that, once the step
has ended, asks git whether the workspace holds a repository, its base and its head, and prints one line on
standard output, marked with a nonce of that exec, before exiting with the step's own exit code. The stream takes
the line out of the log (:class:`ReportCatcher`); when it is missing (the step was stopped, the container went
away) the results are read by an exec as before.

The step's processes could print such a line themselves (they can read the nonce from their parent's command
line): what the line says (a base, a head, or no repository) comes from the workspace they write anyway, so a
forged line tells nothing they could not make git say. The nonce keeps ordinary output that happens to look like
a report from being taken for one. The diff itself is still read by an exec of its own, as are the heads around
an agent step.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from execution.git import anyon_git

MARK = "\x1eanyon-report "
#: A marked line longer than this is not a report: it is shown as output.
MAX_REPORT_CHARS = 256

#: ``$1`` the nonce, ``$2`` the base branch whose remote-tracking commit is the base ("" when known already), then
#: the step's argv, run as a child so that its exit code is kept.
REPORT_SCRIPT = (
    'n=$1 b=$2; shift 2; "$@"; code=$?; ' + anyon_git.PRELUDE + "r=/workspace/.git; "
    'if g --git-dir="$r" rev-parse --git-dir >/dev/null 2>&1; then '
    'base=; [ -z "$b" ] || base=$(g --git-dir="$r" rev-parse --verify -q "refs/remotes/origin/$b^{commit}"); '
    'printf \'\\036anyon-report %s repository %s %s\\n\' "$n" "${base:--}" '
    '"$(g --git-dir="$r" rev-parse --verify -q "HEAD^{commit}" || echo -)"; '
    "else printf '\\036anyon-report %s none\\n' \"$n\"; fi; "
    "exit $code"
)

_REPORT = re.compile(r"(?:none|repository ([0-9a-f]{40}|-) ([0-9a-f]{40}|-))")


@dataclass(frozen=True)
class Commits:
    """What the workspace held when a step ended."""

    repository: bool
    base: str = ""
    head: str = ""


def new_nonce() -> str:
    return secrets.token_hex(8)


def reporting(argv: list[str], *, nonce: str, base_branch: str) -> list[str]:
    """``argv`` run under the reporting ``sh``."""
    return [anyon_git.SH, "-c", REPORT_SCRIPT, "anyon-report", nonce, base_branch, *argv]


def parse(payload: str) -> Commits | None:
    found = _REPORT.fullmatch(payload)
    if found is None:
        return None
    if payload == "none":
        return Commits(repository=False)
    base, head = (value if value != "-" else "" for value in found.groups())
    return Commits(repository=True, base=base, head=head)


class ReportCatcher:
    """Takes the report line of one exec out of its decoded standard output, wherever the chunks split it. Output
    is held back only from a ``\\x1e`` that may start the mark, so a step's ordinary output is never delayed."""

    def __init__(self, nonce: str) -> None:
        self.mark = f"{MARK}{nonce} "
        self.commits: Commits | None = None  # the last report seen
        self._held = ""

    def feed(self, text: str) -> str:
        text, self._held = self._held + text, ""
        shown: list[str] = []
        while (start := text.find(self.mark)) >= 0:
            end = text.find("\n", start)
            if end < 0 and len(text) - start <= MAX_REPORT_CHARS:
                shown.append(text[:start])
                self._held = text[start:]  # the rest of the line is still to come
                return "".join(shown)
            payload = text[start + len(self.mark) : end] if end >= 0 else None
            commits = parse(payload) if payload is not None and len(payload) <= MAX_REPORT_CHARS else None
            if commits is None:  # marked, but not a report: shown as it is
                shown.append(text[: start + 1])
                text = text[start + 1 :]
                continue
            self.commits = commits
            shown.append(text[:start])
            text = text[end + 1 :]
        tail = text.rfind("\x1e", max(0, len(text) - len(self.mark)))
        if tail >= 0 and self.mark.startswith(text[tail:]):
            self._held = text[tail:]
            text = text[:tail]
        shown.append(text)
        return "".join(shown)

    def finish(self) -> str:
        """What is still held at the end of the output (the start of a mark that never came): shown as it is."""
        held, self._held = self._held, ""
        return held
