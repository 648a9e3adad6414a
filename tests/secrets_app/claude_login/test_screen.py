"""Reading the CLI's screens without a session or a process: the real CLIs' recorded output
(tests/fixtures/transcripts/setup-token/) cut into chunks anywhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from secrets_app.claude_login.screen import KEPT_OUTPUT, Screen, is_code
from tests.fixtures.leaks import track_secret

SCREENS = Path(__file__).resolve().parents[2] / "fixtures" / "transcripts" / "setup-token"


def screen(name: str) -> str:
    return (SCREENS / name).read_bytes().decode("utf-8", errors="replace")


def fed(raw: str, chunk: int = 7) -> Screen:
    read = Screen()
    for i in range(0, len(raw), chunk):
        read.feed(raw[i : i + chunk])
    return read


@pytest.mark.parametrize("version", ["2.0.31", "2.1.332"])
def test_the_authorize_url_and_the_prompt_of_both_generations(version):
    raw = screen(f"{version}.raw")
    frame = fed(raw).frame()
    url = frame.authorize_url()
    assert url.startswith("https://claude.ai/oauth/authorize?") and url in raw
    assert frame.shows_prompt() and "\x1b" not in frame.clean
    assert frame.printed_token() is None and frame.oauth_error_after_code() is None


def test_a_url_cut_by_a_chunk_is_not_taken_until_it_is_complete():
    raw = screen("2.0.31.raw")
    url = fed(raw).frame().authorize_url()
    cut = raw.index(url) + len(url) // 2
    assert Screen().feed(raw[:cut]).authorize_url() == ""


@pytest.mark.parametrize("version", ["2.0.31", "2.1.332"])
def test_an_oauth_error_counts_only_after_the_code(version):
    before, full = screen(f"{version}.raw"), screen(f"{version}-exchange-error.raw")
    read = fed(before)
    read.code_sent()
    error = read.feed(full[len(before) :]).oauth_error_after_code()
    assert error.startswith("OAuth error") and "EAI_AGAIN" in error
    assert Screen().feed(full).oauth_error_after_code() is not None  # code_at 0: all of it counts
    stale = fed(before + "OAuth error: stale\r\n")
    stale.code_sent()
    assert stale.feed("\x1b[2K Exchanging…\r\n").oauth_error_after_code() is None


def test_a_token_is_taken_once_a_character_that_cannot_be_part_of_it_follows():
    token = track_secret("sk-ant-oat01-" + "S" * 90 + "-scrAA")
    read = Screen()
    assert read.feed("Your OAuth token\r\n" + token).printed_token() is None
    assert read.feed("\x1b[0m").printed_token() == token


def test_the_kept_output_is_bounded_and_the_code_mark_moves_with_it():
    read = Screen()
    read.feed("x" * 100)
    read.code_sent()
    read.feed("y" * KEPT_OUTPUT)
    assert len(read.raw) == KEPT_OUTPUT and read.code_at == 0
    read.feed("OAuth error: late\n")
    assert read.frame().oauth_error_after_code() == "OAuth error: late"


def test_the_last_error_line_and_the_shape_of_a_code():
    assert Screen().feed("starting\nError: no tty\nbye\n").last_error_line() == "Error: no tty"
    assert Screen().feed("all fine\n").last_error_line() is None
    assert is_code("abcd#efgh") and is_code("A1_-x#y2-_Z")
    assert not is_code("abc#efgh") and not is_code("abcd efgh") and not is_code("abcd#" + "e" * 2000)
