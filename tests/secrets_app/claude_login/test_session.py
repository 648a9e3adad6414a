"""A login session fed with the real CLIs' recorded screens (tests/fixtures/transcripts/setup-token/) instead of a
process: the state it reaches, what it shows, what it would save or fail with."""

from __future__ import annotations

import pytest

from secrets_app.claude_login import LoginSession, State
from tests.fixtures.leaks import track_secret
from tests.secrets_app.claude_login.test_screen import screen


class _Recorder:
    """A login session fed with recorded output instead of a process; what it would save or stop is recorded."""

    def __init__(self, monkeypatch):
        self.session = LoginSession(user_id=0)
        self.saved: list[str] = []
        self.failed: list[str] = []
        monkeypatch.setattr(self.session, "_save", self.saved.append)
        monkeypatch.setattr(self.session, "fail", self._fail)

    def _fail(self, message: str) -> None:  # as the real one: final state, no alert or process to stop
        self.failed.append(message)
        self.session.state = State.ERROR

    def feed(self, raw: str, chunk: int = 7) -> None:
        for i in range(0, len(raw), chunk):  # small chunks: sequences and words cut anywhere
            self.session._on_output(raw[i : i + chunk])

    def code_sent(self) -> None:
        self.session.screen.code_sent()
        self.session.state = State.EXCHANGING


@pytest.mark.parametrize(
    ("version", "url_start"),
    [
        ("2.0.31", "https://claude.ai/oauth/authorize?code=true&client_id="),
        ("2.1.332", "https://claude.ai/oauth/authorize?"),
    ],
)
def test_real_screens_reach_the_code_prompt(monkeypatch, version, url_start):
    raw = screen(f"{version}.raw")
    rec = _Recorder(monkeypatch)
    rec.feed(raw)
    session = rec.session
    assert session.state == State.WAITING_CODE
    assert session.url.startswith(url_start) and session.url in raw and not session.url.endswith(("\x1b", "\x07"))
    if version == "2.1.332":
        # The URL is the OSC 8 hyperlink's target, the same as the text shown.
        assert f";{session.url}\x07" in raw
        assert "\x1b]8;" in raw and "\x1b]8;" not in session.transcript
    else:
        assert "&state=" in session.url
    assert "Paste code here if prompted" in session.transcript
    assert "\x1b" not in session.transcript and not rec.saved and not rec.failed


@pytest.mark.parametrize("version", ["2.0.31", "2.1.332"])
def test_real_exchange_error_ends_the_login(monkeypatch, version):
    """Both CLIs stay open after an OAuth error; the session fails with the CLI's message."""
    before, full = screen(f"{version}.raw"), screen(f"{version}-exchange-error.raw")
    assert full.startswith(before)
    rec = _Recorder(monkeypatch)
    rec.feed(before)
    assert rec.session.state == State.WAITING_CODE
    rec.code_sent()
    rec.feed(full[len(before) :])
    assert len(rec.failed) == 1 and "OAuth error" in rec.failed[0] and not rec.saved
    assert ("EAI_AGAIN" in rec.failed[0]) and "\x1b" not in rec.failed[0]


def test_an_oauth_error_before_the_code_does_not_count(monkeypatch):
    rec = _Recorder(monkeypatch)
    rec.feed(screen("2.1.332.raw") + "OAuth error: stale\r\n")
    rec.code_sent()
    rec.feed("\x1b[2K Exchanging…\r\n")
    assert not rec.failed


@pytest.mark.parametrize("ending", ["\x1b[22m", "\r\r\n", " "])
def test_token_is_taken_only_once_it_has_ended(monkeypatch, ending):
    token = track_secret("sk-ant-oat01-" + "E" * 90 + "-endAA")
    rec = _Recorder(monkeypatch)
    rec.feed(screen("2.1.332.raw"))
    rec.code_sent()
    rec.session._on_output("\x1b[2GYour\x1b[7GOAuth\x1b[13Gtoken\r\r\n\x1b[2G\x1b[1m" + token[:40])
    rec.session._on_output(token[40:-1])
    assert not rec.saved, "a token cut by a chunk boundary must not be stored"
    rec.session._on_output(token[-1:])
    assert not rec.saved
    rec.session._on_output(ending)
    assert rec.saved == [token]


def test_the_pasted_code_and_the_token_are_masked_in_what_viewers_see(monkeypatch):
    """A code echoed by the CLI and the printed token never reach the transcript or a viewer's snapshot."""
    token = track_secret("sk-ant-oat01-" + "M" * 80 + "-maskA")
    rec = _Recorder(monkeypatch)
    monkeypatch.setattr(rec.session.process, "send", lambda text: None)
    rec.feed(screen("2.1.332.raw"))
    rec.session.send_code("pastedCode123#stateXYZ9")
    assert rec.session.state == State.EXCHANGING
    rec.session._on_output("echo pastedCode123#stateXYZ9\r\n" + token + "\r\n")
    assert rec.saved == [token]
    shown = " ".join(str(m) for m in rec.session.snapshot())
    assert token not in shown and "pastedCode123" not in shown and "***" in shown
