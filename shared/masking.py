# Long because both masking layers live here: whole values with their encodings, and token patterns across chunks.
"""Masking of secrets in run output, before anything is stored or sent (docs/ARCHITECTURE.md, "Secret rules").

Output arrives in chunks that may split a secret anywhere: :class:`StreamMasker` only masks complete lines and holds
back the incomplete last line. Fast path: substring checks in C decide whether the regular expressions run at all."""

from __future__ import annotations

import base64
import bisect
import json
import re
from collections.abc import Iterable
from urllib.parse import quote

from shared.token_patterns import PATTERN_PREFIXES, TOKEN_PATTERNS

MASK = "***"

#: The same test in fewer passes over the text: one search for the five ``gh?_`` prefixes (a regex with a literal
#: prefix runs at C speed, 2-3x faster than five substring checks), substring checks for the others.
_GH_PREFIX_RE = re.compile(r"gh[pousr]_")
_OTHER_PREFIXES = tuple(p for p in PATTERN_PREFIXES if not _GH_PREFIX_RE.fullmatch(p))
_PATTERN_RE = re.compile("|".join(TOKEN_PATTERNS))
#: A line's tail that could still grow into a token: held back while the line is incomplete.
_PATTERN_TAIL_RE = re.compile(
    r"(?:(?:gh[pousr]_[A-Za-z0-9]*)|(?:github_pat_[A-Za-z0-9_]*)|(?:sk-ant-[A-Za-z0-9_-]*)"
    r"|(?:x-access-token:[^@\s]*))$"
)
MIN_SECRET_LENGTH = 8
#: The shortest start of a value at the end of a paused dump that keeps its lines held.
DUMP_TAIL_HELD = 4

#: A full line of wrapped base64 (``base64`` wraps at 76 columns, ``openssl base64`` and PEM at 64), and a block of
#: them with its last line: a secret's base64 can straddle the line breaks, where the per-line search misses it.
_WRAP_WIDTHS = (64, 76)
_WRAP_LINE_RE = re.compile(r"[A-Za-z0-9+/_-]{64}(?:[A-Za-z0-9+/_-]{12})?")
_WRAP_START_RE = re.compile(r"[A-Za-z0-9+/_-]{1,76}")
#: Starts with a line break: a pattern with a literal first character is searched at C speed from one line break to
#: the next, instead of being tried at every position (the text is searched with a line break put in front).
_WRAPPED_RE = re.compile(r"\n((?:[A-Za-z0-9+/_-]{64}(?:[A-Za-z0-9+/_-]{12})?\n)+[A-Za-z0-9+/_=-]{1,76})(?=\n|\Z)")


#: A line of a hex dump: an optional offset (xxd's ``00000010:``, od's ``0000020``, hexdump -C's ``00000010``), hex
#: groups of whole bytes between blanks (group 1), and an optional character column after two blanks or a ``|`` (xxd,
#: hexdump -C).
_HEX_DUMP_LINE_RE = re.compile(
    r"^[ \t]*(?:[0-9a-fA-F]{6,16}:?[ \t]+)?((?:[0-9a-fA-F]{2})+(?:[ \t]+(?:[0-9a-fA-F]{2})+)*)[ \t]*"
    r"(?:(?:[ \t]{2}|\|).*)?$",
    re.M,
)
#: A line of ``od -c``: an optional octal offset, then single characters (or od's escapes) between blanks (group 1).
_CHAR_DUMP_LINE_RE = re.compile(r"^(?:[ \t]*[0-7]{7,})?((?:[ \t]+(?:\\[0-7]{3}|\\.|\S)){2,})[ \t]*$", re.M)
#: A line of an encoding wrapped at any width (``base64 -w N``, ``base32 -w N``, ``fold``): one run of their alphabets.
_WRAPPED_ANY_LINE_RE = re.compile(r"^()([A-Za-z0-9+/=_-]+)$", re.M)
#: Any line: when a value shows in the text without its line breaks, every line may carry a piece (``fold``).
_ANY_LINE_RE = re.compile(r"^()(.+)$", re.M)
_DUMP_BLANKS_RE = re.compile(r"[ \t]+")
_DUMP_FLAVOURS = ((_HEX_DUMP_LINE_RE, True), (_CHAR_DUMP_LINE_RE, False), (_WRAPPED_ANY_LINE_RE, False))
#: The widths wrapping tools use by default: fold 80, base64 and base32 76, openssl 64, xxd -p 60.
_TOOL_WRAP_WIDTHS = frozenset((60, 64, 76, 80))


def _dump_blocks(text: str, line_re: re.Pattern[str]) -> list[list[tuple[int, int, str]]]:
    """Runs of neighbouring lines that ``line_re`` matches: (line start, line end, the line's dump cells joined)."""
    blocks: list[list[tuple[int, int, str]]] = []
    previous_end = -2
    for match in line_re.finditer(text):
        cells = _DUMP_BLANKS_RE.sub("", match.group(match.lastindex or 1))
        if blocks and match.start() == previous_end + 1:
            blocks[-1].append((match.start(), match.end(), cells))
        else:
            blocks.append([(match.start(), match.end(), cells)])
        previous_end = match.end()
    return blocks


def _base64_forms(value: bytes) -> set[str]:
    """Base64 of ``value`` as it appears inside a longer base64 text, at each of the 3 byte offsets."""
    forms = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + value).decode()
        # Drop the characters that depend on the unknown neighbouring bytes: 4 chars per 3 bytes.
        start = {0: 0, 1: 2, 2: 3}[offset]
        tail_bytes = (offset + len(value)) % 3
        end = len(encoded) - {0: 0, 1: 3, 2: 2}[tail_bytes]
        core = encoded[start:end]
        if len(core) >= MIN_SECRET_LENGTH:
            forms.add(core)
            forms.add(core.replace("+", "-").replace("/", "_"))  # URL-safe alphabet
    return forms


def _base32_forms(value: bytes) -> set[str]:
    """Base32 of ``value`` inside a longer base32 text, at each of the 5 byte offsets (8 characters per 5 bytes)."""
    forms = set()
    for offset in range(5):
        encoded = base64.b32encode(b"\0" * offset + value).decode()
        core = encoded[-(-offset * 8 // 5) : (offset + len(value)) * 8 // 5]
        if len(core) >= MIN_SECRET_LENGTH:
            forms.add(core)
    return forms


def secret_variants(value: str) -> set[str]:
    """The forms in which ``value`` may show up in output."""
    variants: set[str] = set()
    pieces = {value, *value.splitlines()}
    for piece in pieces:
        piece = piece.strip("\r")
        if len(piece) < MIN_SECRET_LENGTH:
            continue
        raw = piece.encode()
        variants.add(piece)
        variants.add(quote(piece, safe=""))
        variants.add(json.dumps(piece)[1:-1])
        variants.update(_base64_forms(raw))
        variants.update((raw.hex(), raw.hex().upper()))  # xxd -p, od, hexdump: a common way to smuggle text
        variants.update(_base32_forms(raw))
        variants.add(piece[::-1])  # rev
    return {v for v in variants if len(v) >= MIN_SECRET_LENGTH}


#: Above this many candidate positions in one text, masking runs over the whole text at once.
MAX_CANDIDATE_LINES = 4096


def _line_spans(text: str, positions: list[int]) -> list[tuple[int, int]]:
    """The lines (with their line break) holding ``positions`` (sorted), neighbouring lines merged."""
    spans: list[tuple[int, int]] = []
    for position in positions:
        if spans and position < spans[-1][1]:
            continue
        start = text.rfind("\n", 0, position) + 1
        end = text.find("\n", position)
        end = len(text) if end < 0 else end + 1
        if spans and start <= spans[-1][1]:
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
    return spans


class Masker:
    """Masks complete text (no state). Build one per run with the secrets injected into it."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        variants: set[str] = set()
        for secret in secrets:
            if secret:
                variants.update(secret_variants(secret))
        # Longest first, so that a secret is masked whole rather than an encoding that is a part of it.
        self.variants = sorted(variants, key=len, reverse=True)
        self.max_variant = max((len(v) for v in self.variants), default=0)
        self._literal_re = re.compile("|".join(map(re.escape, self.variants))) if self.variants else None
        #: Lines of a wrapped base64 block a stream holds back so a secret's base64 is never cut across a release.
        self.wrap_lines_held = -(-self.max_variant // min(_WRAP_WIDTHS)) + 1 if self.variants else 0

    def mask(self, text: str) -> str:
        """Mask ``text``. The regular expressions are slow on megabytes, and no secret spans a line break, so they
        run only on the lines where a substring search (at C speed) found a variant or a token prefix."""
        widths = set(map(len, text.split("\n"))) if "\n" in text else set()
        if self._literal_re is not None and not widths.isdisjoint(_WRAP_WIDTHS):
            text = self._mask_wrapped(text)
        text = self._mask_lines(text)
        return self._mask_dumps(text, widths) if "\n" in text.rstrip("\n") else text  # dumps take two lines

    def _mask_lines(self, text: str) -> str:
        starts = self._candidates(text)
        if not starts:
            return text
        if len(starts) > MAX_CANDIDATE_LINES:  # output full of candidates: one pass over everything
            return self._mask_all(text)
        pieces, done = [], 0
        for start, end in _line_spans(text, sorted(starts)):
            pieces += [text[done:start], self._mask_all(text[start:end])]
            done = end
        pieces.append(text[done:])
        return "".join(pieces)

    def find(self, text: str) -> str:
        """What in ``text`` would be masked: ``""``, or a description for a refusal message."""
        if self._literal_re is not None and self._literal_re.search(text):
            return "a credential of this attempt (or an encoding of it)"
        if _PATTERN_RE.search(text):
            return "a token-shaped string"
        return ""

    def wrapped_spans(self, block: str) -> list[tuple[int, int]]:
        """Where in a block of wrapped base64 lines (``\\n`` between them) a known value's base64 lies, as spans
        of ``block`` that may cross line breaks."""
        flat = block.replace("\n", "")
        if not any(variant in flat for variant in self.variants):  # substring search at C speed decides
            return []
        flat_starts, at = [], 0  # where each line starts in ``flat``; in ``block`` it starts ``index`` later
        for line in block.split("\n"):
            flat_starts.append(at)
            at += len(line)

        def in_block(position: int) -> int:
            return position + bisect.bisect_right(flat_starts, position) - 1

        return [(in_block(m.start()), in_block(m.end() - 1) + 1) for m in self._literal_re.finditer(flat)]

    def _mask_wrapped(self, text: str) -> str:
        """Mask base64 of a known value that line wrapping split (each piece of it on each line becomes ***)."""
        pieces, done = [], 0
        for match in _WRAPPED_RE.finditer("\n" + text):
            found = match.group(1)
            spans = self.wrapped_spans(found)
            if not spans:
                continue
            base = match.start(1) - 1  # the line break put in front
            masked = bytearray(len(found))
            for start, end in spans:
                masked[start:end] = b"\1" * (end - start)
            out, run = [], False
            for i, ch in enumerate(found):
                if masked[i] and ch != "\n":
                    if not run:
                        out.append(MASK)
                    run = True
                else:
                    out.append(ch)
                    run = False
            pieces += [text[done:base], "".join(out)]
            done = base + len(found)
        if not pieces:
            return text
        pieces.append(text[done:])
        return "".join(pieces)

    def _dump_hits(self, projection: str, decoded: bool) -> list[tuple[int, int]]:
        """Spans of ``projection`` (a dump's cells joined) that hold a known value or a token; with ``decoded`` the
        cells are hex, searched as they are and as the bytes they spell (2 cells' characters a byte)."""
        hits = []
        if self._literal_re is not None:
            hits += [m.span() for m in self._literal_re.finditer(projection)]
        if not decoded:
            return hits + [m.span() for m in _PATTERN_RE.finditer(projection)]
        spelled = bytes.fromhex(projection[: len(projection) // 2 * 2]).decode("latin-1")
        for pattern in (self._literal_re, _PATTERN_RE):
            if pattern is not None:
                hits += [(m.start() * 2, m.end() * 2) for m in pattern.finditer(spelled)]
        return hits

    def _mask_dumps(self, text: str, widths: set[int] | None = None) -> str:
        """Mask every line of a hex or character dump, or of a value wrapped at any width, that holds part of a known
        value or token (whole lines: what a dump spreads over lines and columns cannot be cut out more finely).

        Runs after the per-line masking, so what is left to find is spread over lines. Checks at C speed keep ordinary
        output fast: the dumps of xxd, od and hexdump number their lines with zero-padded offsets, and the wrapping
        tools' lines (``_TOOL_WRAP_WIDTHS``) show a value once the line breaks are gone. Other widths and offset-less
        dumps (``xxd -c 7 -p``, ``od -An``) are what an agent picks on purpose, and masking is no defence against one
        (docs/ARCHITECTURE.md, "Secret rules")."""
        if widths is None:
            widths = set(map(len, text.split("\n")))
        flavours = []
        if "\n0000" in text or text.startswith("0000"):
            flavours += [(_HEX_DUMP_LINE_RE, True), (_CHAR_DUMP_LINE_RE, False)]
        if not widths.isdisjoint(_TOOL_WRAP_WIDTHS) and self._found_flat(text.replace("\n", "")):
            flavours.append((_ANY_LINE_RE, False))
        if not flavours:
            return text
        lines_hit: list[tuple[int, int]] = []
        for line_re, decoded in flavours:
            for block in _dump_blocks(text, line_re):
                if len(block) == 1 and " " not in text[block[0][0] : block[0][1]].strip():
                    continue  # a lone run without blanks: the literal search sees it whole
                projection = "".join(cells for _, _, cells in block)
                if decoded and len(projection) % 2:
                    continue
                hits = self._dump_hits(projection, decoded)
                if not hits:
                    continue
                ends, at = [], 0
                for _, _, cells in block:
                    at += len(cells)
                    ends.append(at)
                for start, end in hits:
                    first = bisect.bisect_right(ends, start)
                    last = bisect.bisect_left(ends, end)
                    lines_hit += [(block[i][0], block[i][1]) for i in range(first, min(last, len(block) - 1) + 1)]
        if not lines_hit:
            return text
        pieces, done = [], 0
        for start, end in sorted(set(lines_hit)):
            pieces += [text[done:start], MASK]
            done = end
        pieces.append(text[done:])
        return "".join(pieces)

    def _found_flat(self, flat: str) -> bool:
        return any(variant in flat for variant in self.variants) or bool(
            (_GH_PREFIX_RE.search(flat) or any(prefix in flat for prefix in _OTHER_PREFIXES))
            and _PATTERN_RE.search(flat)
        )

    def dump_lines_to_keep(self, lines: list[str]) -> int:
        """How many of the last dump ``lines`` (held by a stream when output pauses) must wait for more output: those
        whose cells end with what could be the start of a known value (or of a token) continued on later lines."""
        cells, line_of = [], []
        for index, line in enumerate(lines):
            for line_re, _ in (*_DUMP_FLAVOURS, (_ANY_LINE_RE, False)):
                match = line_re.fullmatch(line)
                if match:
                    piece = _DUMP_BLANKS_RE.sub("", match.group(match.lastindex or 1))
                    cells.append(piece)
                    line_of += [index] * len(piece)
                    break
        projection = "".join(cells)
        start = len(projection)
        tail = _PATTERN_TAIL_RE.search(projection)
        if tail and tail.start() < len(projection):
            start = tail.start()
        # A tail shorter than this goes out on a pause: only an agent that pauses on purpose in the middle of a value
        # gains from it, and masking is no defence against one (docs/ARCHITECTURE.md, "Secret rules").
        for i in range(max(0, len(projection) - self.max_variant), min(start, len(projection) - DUMP_TAIL_HELD + 1)):
            rest = projection[i:]
            if any(len(v) > len(rest) and v.startswith(rest) for v in self.variants):  # a whole one is masked
                start = i
                break
        return len(lines) - line_of[start] if start < len(projection) else 0

    def _mask_all(self, text: str) -> str:
        if self._literal_re is not None:
            text = self._literal_re.sub(MASK, text)
        return _PATTERN_RE.sub(MASK, text)

    def _candidates(self, text: str) -> list[int]:
        """Where a known variant or a token prefix occurs (every token pattern starts with a prefix)."""
        found = [m.start() for m in _GH_PREFIX_RE.finditer(text)]
        for needle in (*self.variants, *_OTHER_PREFIXES):
            at = text.find(needle)
            while at >= 0 and len(found) <= MAX_CANDIDATE_LINES:
                found.append(at)
                at = text.find(needle, at + 1)
        return found

    def safe_prefix_length(self, partial: str) -> int:
        """How much of an incomplete line may be released now: everything before a tail that could be the start
        of a secret (of a known value or of a token pattern) once more output arrives."""
        cut = len(partial)
        match = _PATTERN_TAIL_RE.search(partial)
        if match:
            cut = match.start()
        else:
            # A tail that is a strict prefix of a token pattern's prefix ("gh", "sk-an", "x-acc", ...).
            for prefix in PATTERN_PREFIXES:
                for k in range(min(len(prefix) - 1, len(partial)), 0, -1):
                    if partial.endswith(prefix[:k]):
                        cut = min(cut, len(partial) - k)
                        break
        window_start = max(0, len(partial) - self.max_variant)
        for i in range(window_start, cut):
            tail = partial[i:]
            if any(v.startswith(tail) for v in self.variants):
                cut = i
                break
        return cut


def _may_go_on(line: str) -> bool:
    """Whether ``line`` is a full line of wrapped base64 or a line of a dump: its block may go on in the next chunk."""
    return bool(
        _WRAP_LINE_RE.fullmatch(line)
        or len(line) in _TOOL_WRAP_WIDTHS
        or (len(line) >= 2 and any(line_re.fullmatch(line) for line_re, _ in _DUMP_FLAVOURS))
    )


def trailing_wrap_lines(lines: list[str]) -> int:
    """How many of the last ``lines`` belong to a block that may go on in the next chunk (wrapped base64, a dump)."""
    count = 0
    for line in reversed(lines):
        if not _may_go_on(line):
            break
        count += 1
    return count


class StreamMasker:
    """Masks one output stream that arrives in arbitrary chunks.

    Complete lines are released masked, except a trailing run of full-width base64 lines: the block may go on in
    the next chunk, and a secret's base64 may straddle the chunk boundary, so it is held until the block ends (or
    grows past ``max_line``, or output pauses: then all but the lines a secret could still reach are released)."""

    def __init__(self, masker: Masker, *, max_line: int = 64 * 1024) -> None:
        self.masker = masker
        self.max_line = max_line
        self._held = ""  # complete lines of a wrapped base64 block that may go on (each ends with a line break)
        self._partial = ""

    @property
    def pending(self) -> int:
        return len(self._held) + len(self._partial)

    def feed(self, text: str) -> str:
        """Add ``text``; return the masked complete lines it finishes (may be empty)."""
        data = self._held + self._partial + text
        self._held = ""
        newline = data.rfind("\n")
        if newline < 0:
            self._partial = data
            if len(data) > self.max_line:  # a line without end: release what is safe so memory stays bounded
                return self.release()
            return ""
        self._partial = data[newline + 1 :]
        complete = data[: newline + 1]
        if self.masker.wrap_lines_held:
            lines = complete[:-1].split("\n")
            held = trailing_wrap_lines(lines)
            if held:  # the block may go on in the incomplete line or the next chunk
                self._held = "\n".join(lines[-held:]) + "\n"
                complete = complete[: len(complete) - len(self._held)]
                if len(self._held) > self.max_line:
                    return self.masker.mask(complete) + self._release_held()
        out = self.masker.mask(complete)
        if len(self._partial) > self.max_line:
            out += self.release()
        return out

    def _release_held(self, keep: int | None = None) -> str:
        """Release the held block masked, but for its last lines (at least ``wrap_lines_held``), cut at a line
        break no secret's base64 crosses, so the kept lines are masked whole with what follows them."""
        lines = self._held[:-1].split("\n")
        keep = min(len(lines), self.masker.wrap_lines_held if keep is None else keep)
        spans = self.masker.wrapped_spans(self._held[:-1])
        starts = [0]
        for line in lines:
            starts.append(starts[-1] + len(line) + 1)
        cut = len(lines) - keep
        while cut > 0 and any(start < starts[cut] < end for start, end in spans):
            cut -= 1
        released = "".join(line + "\n" for line in lines[:cut])
        self._held = "".join(line + "\n" for line in lines[cut:])
        if not released:
            return ""
        # Masked with the kept lines, so a secret whose base64 ends within them is seen whole; then cut back. A dump
        # line masked because a value went on from a released line stays masked in the kept lines.
        masked = self.masker.mask(released + self._held).split("\n")
        self._held = "".join(line + "\n" for line in masked[cut:-1])
        return "".join(line + "\n" for line in masked[:cut])

    def release(self) -> str:
        """Output paused: release the held block but for its last lines (a dump: those a value could go on from),
        and the masked part of the incomplete line that cannot start a secret."""
        out = ""
        if self._held:
            lines = self._held[:-1].split("\n")
            keep = (
                None if all(_WRAP_LINE_RE.fullmatch(line) for line in lines) else self.masker.dump_lines_to_keep(lines)
            )
            out = self._release_held(keep)
        if self._held or not self._partial:
            return out  # lines still held: the partial line (if any) waits behind them
        if self.masker.wrap_lines_held and _WRAP_START_RE.fullmatch(self._partial):
            return out  # it may be the start of a line of wrapped base64: cut now, its block could not be seen whole
        masked = self.masker.mask(self._partial)
        if masked != self._partial:
            # A whole secret is already in the partial line: mask it and release up to its end.
            cut = self.masker.safe_prefix_length(masked)
            released, self._partial = masked[:cut], masked[cut:]
            return out + released
        cut = self.masker.safe_prefix_length(self._partial)
        released, self._partial = self._partial[:cut], self._partial[cut:]
        return out + released

    def finish(self) -> str:
        """End of stream: mask and return everything that is left."""
        out, self._held, self._partial = self.masker.mask(self._held + self._partial), "", ""
        return out
