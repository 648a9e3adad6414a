"""Reading what ``claude setup-token`` draws in its terminal: the authorize URL, the code prompt, the printed token,
an OAuth error. Pure (no Django, no process): contract "The Claude login's screen is pure" (docs/ARCHITECTURE.md).

Both CLI generations are read (raw screens in tests/fixtures/transcripts/setup-token/): 2.0.31 prints the full
authorize URL and ``Paste code here if prompted >``; 2.1.x separates words by cursor moves (``ESC[<n>G``), wraps
the (shorter) URL in an OSC 8 hyperlink, and draws the prompt above a boxed input line. Both stay open after an
``OAuth error`` ("Press Enter to retry").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from secrets_app.terminal_output import ANSI, CURSOR_GAP, SPINNER, clean_terminal_output
from shared.token_patterns import CLAUDE_OAUTH_TOKEN

AUTHORIZE_URL = re.compile(r"https://\S+/oauth/authorize\?\S+(?=\s)")  # complete: followed by the line end
#: The target of an OSC 8 hyperlink to the authorize page (complete: the sequence is closed).
AUTHORIZE_LINK = re.compile(
    r"\x1b\]8;[^;\x07\x1b]*;(https://[^\s\x07\x1b]+/oauth/authorize\?[^\s\x07\x1b]+)(?:\x07|\x1b\\)"
)
#: An OAuth error line, complete (its CR or LF has arrived). Searched in output where CR ends a line: 2.1.x
#: follows the error with CR and a cursor move, which the redraw logic of clean_terminal_output would erase.
OAUTH_ERROR = re.compile(r"OAuth error[^\r\n]*(?=[\r\n])", re.IGNORECASE)
OAUTH_TOKEN = re.compile(CLAUDE_OAUTH_TOKEN)
CODE = re.compile(r"^[A-Za-z0-9_-]{4,}#[A-Za-z0-9_-]{4,}$")
MAX_CODE = 2000
PROMPT = "Paste code here"
KEPT_OUTPUT = 200_000  # characters of raw output kept (the screens are a few kB)


def is_code(code: str) -> bool:
    """Whether ``code`` has the shape of what the authorize page shows: ``<code>#<state>``."""
    return bool(CODE.match(code)) and len(code) <= MAX_CODE


@dataclass(frozen=True)
class Frame:
    """The output so far, as one consistent view: ``raw`` as received, ``clean`` as a person reads it, and where
    in ``raw`` the code was sent (0: not yet)."""

    raw: str
    clean: str
    code_at: int = 0

    def authorize_url(self) -> str:
        """The authorize URL once complete: the hyperlink's target when the CLI draws one (2.1.x), else the text."""
        link = AUTHORIZE_LINK.search(self.raw)
        if link:
            return link.group(1)
        found = AUTHORIZE_URL.search(self.clean)
        return found.group(0) if found else ""

    def shows_prompt(self) -> bool:
        return PROMPT in self.clean

    def printed_token(self) -> str | None:
        """The token, once its end is there: in the raw output a character that cannot be part of it follows
        (the cleaned text drops trailing blanks and sequences, so it cannot tell a whole token from a cut one)."""
        for found in OAUTH_TOKEN.finditer(self.clean):
            if re.search(re.escape(found.group(0)) + r"(?=[^A-Za-z0-9_-])", self.raw):
                return found.group(0)
        return None

    def oauth_error_after_code(self) -> str | None:
        """A complete OAuth error line printed after the code was sent (an earlier one does not count)."""
        after = SPINNER.sub("", ANSI.sub("", CURSOR_GAP.sub(" ", self.raw[self.code_at :])))
        error = OAUTH_ERROR.search(after)
        return error.group(0).strip() if error else None

    def last_error_line(self) -> str | None:
        """The last line that mentions an error (what to say when the CLI exits without a token)."""
        errors = [line.strip() for line in self.clean.splitlines() if "error" in line.lower()]
        return errors[-1] if errors else None


class Screen:
    """The CLI's output, fed in chunks as they arrive (cut anywhere, also inside a sequence or a token)."""

    def __init__(self) -> None:
        self.raw = ""
        self.code_at = 0

    def feed(self, chunk: str) -> Frame:
        kept = (self.raw + chunk)[-KEPT_OUTPUT:]
        self.code_at = max(0, self.code_at - (len(self.raw) + len(chunk) - len(kept)))
        self.raw = kept
        return self.frame()

    def code_sent(self) -> None:
        """From now on an OAuth error is the answer to the code."""
        self.code_at = len(self.raw)

    def frame(self) -> Frame:
        return Frame(raw=self.raw, clean=clean_terminal_output(self.raw), code_at=self.code_at)
