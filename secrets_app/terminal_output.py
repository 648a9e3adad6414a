"""What a person would read on a terminal: the output of a program in a PTY without colours, cursor moves or
spinner frames (the Claude login reads ``claude setup-token`` through it)."""

from __future__ import annotations

import re

#: Control sequences: CSI (any parameters, also private ones like ``ESC[>0q``), OSC ended by BEL or ST (OSC 8
#: hyperlinks), DCS/SOS/PM/APC strings (terminal queries of 2.1.x), charset selection, keypad modes.
ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[P_^X][^\x1b]*\x1b\\|\x1b[()][A-Za-z0-9]|\x1b[=>78]"
)
#: Cursor moves that stand for blank space within a line (2.1.x puts ``ESC[<column>G`` between words).
CURSOR_GAP = re.compile(r"\x1b\[[0-9]*[CG]")
SPINNER = re.compile(r"[\u2800-\u28ff]")


def clean_terminal_output(text: str) -> str:
    """What a person would read on the terminal: no colours, cursor moves or spinner frames."""
    text = CURSOR_GAP.sub(" ", text)
    text = ANSI.sub("", text)
    text = SPINNER.sub("", text)
    text = re.sub(r"\r+\n", "\n", text)  # CR before LF erases nothing (2.1.x ends lines with CR CR LF)
    lines = []
    for line in text.split("\n"):
        # A carriage return redraws the line: only the last drawing counts.
        lines.append(line.split("\r")[-1].rstrip())
    return "\n".join(lines)
