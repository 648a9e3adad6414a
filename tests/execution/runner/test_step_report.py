"""The report of the workspace's commits at the end of a step's exec (execution/runner/step_report.py): taken out
of the output wherever the chunks split it, and nothing else taken; the real ``sh`` is in
tests/execution/runner/test_workspace.py."""

from __future__ import annotations

import pytest

from execution.runner.step_report import MARK, MAX_REPORT_CHARS, Commits, ReportCatcher, parse

NONCE = "0123456789abcdef"
BASE, HEAD = "a" * 40, "b" * 40
LINE = f"{MARK}{NONCE} repository {BASE} {HEAD}\n"


def through(catcher: ReportCatcher, pieces: list[str]) -> str:
    return "".join(catcher.feed(piece) for piece in pieces) + catcher.finish()


def test_the_report_is_taken_out_wherever_the_output_is_cut():
    output = "out\n" + LINE
    for cut in range(len(output) + 1):
        catcher = ReportCatcher(NONCE)
        assert through(catcher, [output[:cut], output[cut:]]) == "out\n", cut
        assert catcher.commits == Commits(repository=True, base=BASE, head=HEAD), cut


def test_one_character_at_a_time_and_output_after_the_report():
    catcher = ReportCatcher(NONCE)
    assert through(catcher, list("partial line" + LINE + "a background process\n")) == (
        "partial linea background process\n"
    )
    assert catcher.commits.head == HEAD


def test_no_repository_and_unknown_commits():
    assert parse("none") == Commits(repository=False)
    assert parse(f"repository - {HEAD}") == Commits(repository=True, base="", head=HEAD)
    assert parse("repository - -") == Commits(repository=True, base="", head="")
    for bad in ("", "none ", "repository", f"repository {BASE}", f"repository {BASE} {HEAD} x", "repository ZZ -"):
        assert parse(bad) is None, bad


@pytest.mark.hostile
def test_what_only_looks_like_a_report_stays_output():
    """Another exec's nonce, a malformed payload, a mark that never ends its line: shown as printed, no commits."""
    catcher = ReportCatcher(NONCE)
    other = f"{MARK}ffffffffffffffff repository {BASE} {HEAD}\n"
    malformed = f"{MARK}{NONCE} repository {BASE} $(rm -rf /)\n"
    endless = f"{MARK}{NONCE} " + "x" * (MAX_REPORT_CHARS + 10)
    assert through(catcher, [other, malformed, endless]) == other + malformed + endless
    assert catcher.commits is None


def test_ordinary_output_is_never_held_back():
    catcher = ReportCatcher(NONCE)
    assert catcher.feed("no record separator here, even without a newline") == (
        "no record separator here, even without a newline"
    )
    assert catcher.feed("a\x1e that is not the mark") == "a\x1e that is not the mark"
    assert catcher.feed("ends with \x1e") == "ends with "  # may start the mark: held until the next piece
    assert catcher.feed("and goes on") == "\x1eand goes on"
