# Long because every encoding of every injected value is its own case.
"""Masking: every injected value and its encodings, token patterns, and secrets split across chunks."""

import base64
import json
import re
import shutil
import subprocess
from urllib.parse import quote

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from shared.masking import MASK, Masker, StreamMasker

pytestmark = pytest.mark.hostile  # attacks: counted in docs/QA_CHECKLIST.md

GH = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
OAT = "sk-ant-oat01-" + "x" * 40 + "_-Zz"
PLAIN = "hunter2-correct-horse"  # a secret without a known pattern: only the value list can mask it


def test_plain_and_encoded_forms_are_masked():
    m = Masker([PLAIN])
    for form in (PLAIN, quote(PLAIN, safe=""), json.dumps(PLAIN)[1:-1], base64.b64encode(PLAIN.encode()).decode()):
        out = m.mask(f"before {form} after")
        assert PLAIN not in out and form not in out and MASK in out


def test_base64_inside_longer_base64_at_every_offset():
    m = Masker([PLAIN])
    for prefix in (b"", b"a", b"ab", b"abc", b"abcd"):
        blob = base64.b64encode(prefix + PLAIN.encode() + b"trailing").decode()
        masked = m.mask(blob)
        assert MASK in masked, prefix
        # what is left around the mask is at most the few characters that also encode neighbouring bytes
        assert len(masked.replace(MASK, "")) <= len(blob) - len(base64.b64encode(PLAIN.encode())) + 6


def test_each_line_of_a_multiline_secret():
    secret = "line-one-secret\nline-two-secret"
    out = Masker([secret]).mask("x line-two-secret y")
    assert "line-two-secret" not in out


def test_token_patterns_without_being_told():
    m = Masker([])
    text = f"a {GH} b {OAT} c github_pat_{'Z' * 30} d https://x-access-token:abc123@github.com/o/r e"
    out = m.mask(text)
    for leaked in (GH, OAT, "github_pat_ZZZ", "abc123"):
        assert leaked not in out
    assert out.startswith("a *** b *** c *** d https://***github.com/o/r e")


def test_short_values_are_not_masked():
    assert Masker(["abc"]).mask("abc abc") == "abc abc"


def test_stream_holds_partial_line_until_newline():
    s = StreamMasker(Masker([PLAIN]))
    assert s.feed("start " + PLAIN[:5]) == ""
    assert s.feed(PLAIN[5:] + " end\n") == f"start {MASK} end\n"


def test_release_keeps_a_possible_secret_prefix():
    s = StreamMasker(Masker([PLAIN]))
    s.feed("progress 50% " + PLAIN[:6])
    released = s.release()
    assert released == "progress 50% "  # the tail might be the start of the secret
    assert s.feed(PLAIN[6:] + "\n") + s.release() == f"{MASK}\n"  # a one-word line may be a wrapped block's
    s.feed("downloading ghp_abc")
    assert s.release() == "downloading "


def test_unbounded_line_is_released_and_memory_bounded():
    s = StreamMasker(Masker([PLAIN]), max_line=1000)
    out = s.feed("y" * 5000)
    assert len(out) == 5000 and s.pending == 0
    s.feed("z" * 2000 + "x")  # a trailing "x" could start "x-access-token:": held back, the rest released
    assert s.pending == 1


@st.composite
def output_with_secrets(draw):
    secrets = [GH, OAT, PLAIN]
    pieces = draw(
        st.lists(
            st.one_of(
                st.sampled_from(secrets),
                st.sampled_from([base64.b64encode(v.encode()).decode() for v in secrets]),
                st.sampled_from([v.encode().hex() for v in secrets] + [v.encode().hex().upper() for v in secrets]),
                st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=30),
                st.just("\n"),
            ),
            min_size=1,
            max_size=30,
        )
    )
    text = "".join(pieces)
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=12)))
    chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    releases = draw(st.lists(st.booleans(), min_size=len(chunks), max_size=len(chunks)))
    return secrets, chunks, releases


@settings(max_examples=400, deadline=None)
@given(output_with_secrets())
def test_no_secret_survives_any_chunking(case):
    secrets, chunks, releases = case
    stream = StreamMasker(Masker(secrets))
    out = ""
    for chunk, release in zip(chunks, releases, strict=True):
        out += stream.feed(chunk)
        if release:  # output paused here
            out += stream.release()
    out += stream.finish()
    for secret in secrets:
        assert secret not in out
        assert base64.b64encode(secret.encode()).decode()[:-4] not in out
        assert secret.encode().hex() not in out.lower()
    # Nothing but secrets was lost: removing the masks from both sides leaves the same non-secret text.
    original = "".join(chunks)
    assert original.count("\n") == out.count("\n")


TOKENISH = ["gh", "p_", "ghp_", "gho_", "ghx_", "github_pat_", "sk-ant-", "oat01-", "x-access-token:", "@", "_", "-"]
TOKENISH += ["A" * 36, "b" * 22, "z9" * 11, " ", "\n", "high"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(TOKENISH), max_size=40).map("".join))
@example("github_pat_\nghghghghp_bbbbbbbbbbbbbbbbbbbbbbx-access-token:github_pat_@@")  # a token wrapped at its prefix
def test_the_prefix_fast_path_never_skips_a_token(text):
    """The fast path only decides whether the token regex runs; running it always must give the same text."""
    from shared.masking import _PATTERN_RE

    masked = _PATTERN_RE.sub(MASK, text)
    widths = set(map(len, text.split("\n"))) if "\n" in text else set()  # a wrapped token: the widths as printed
    expected = Masker()._mask_dumps(masked, widths) if "\n" in masked.rstrip("\n") else masked
    assert Masker().mask(text) == expected


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from([GH, OAT, PLAIN, base64.b64encode(GH.encode()).decode(), "\n", " ", "x" * 50, *TOKENISH]),
        max_size=60,
    ).map("".join)
)
def test_masking_only_the_candidate_lines_equals_masking_everything(text):
    """mask() runs the regular expressions on the lines where a substring search found something; the result must
    be what running them over the whole text gives."""
    masker = Masker([GH, OAT, PLAIN])
    widths = set(map(len, text.split("\n")))  # the dump checks look at the lines as printed
    expected = masker._mask_all(masker._mask_wrapped(text))
    if "\n" in text.rstrip("\n"):
        expected = masker._mask_dumps(expected, widths)
    assert masker.mask(text) == expected


def test_output_full_of_candidates_is_masked_in_one_pass_with_the_same_result():
    masker = Masker([GH])
    text = ("ghp_short " + GH + " gh" + "\n") * 3000  # thousands of candidate positions
    assert masker.mask(text) == masker._mask_all(text)
    assert GH not in masker.mask(text)


# --- base64 wrapped at 76 (``base64``, ``env | base64``) or 64 columns (``openssl base64``, PEM) -------------------
def wrapped(data: bytes, width: int) -> str:
    flat = base64.b64encode(data).decode()
    return "\n".join(flat[i : i + width] for i in range(0, len(flat), width)) + "\n"


def leaked_forms(secret: str, text: str) -> list[str]:
    """The secret's base64 forms (at each alignment) still readable in ``text`` once its line breaks are gone."""
    from shared.masking import secret_variants

    flat = text.replace("\n", "")
    return [v for v in secret_variants(secret) if v in flat]


def test_base64_wrapped_at_76_or_64_columns_is_masked_across_the_line_breaks():
    masker = Masker([GH, OAT])
    for width in (76, 64):
        for before in range(0, 120, 7):  # the secret lands at every position relative to the line breaks
            data = b"PATH=/usr/bin\nHOME=/home/anyon\n" + b"x" * before + f"GH_TOKEN={GH}\nK={OAT}\n".encode()
            text = wrapped(data + b"TERM=dumb\n" * 8, width)
            masked = masker.mask(text)
            assert not leaked_forms(GH, masked) and not leaked_forms(OAT, masked), (width, before)
            assert MASK in masked and masked.count("\n") == text.count("\n")
            # and only the secrets went: the lines far from them are intact
            assert masked.splitlines()[0] == text.splitlines()[0] or before < 20


def test_wrapped_base64_without_a_secret_passes_untouched():
    text = wrapped(bytes(range(256)) * 4, 76)
    assert Masker([GH]).mask(text) == text
    stream = StreamMasker(Masker([GH]))
    assert stream.feed(text[:500]) + stream.feed(text[500:]) + stream.finish() == text


@st.composite
def wrapped_output_in_chunks(draw):
    width = draw(st.sampled_from([64, 76]))
    before = draw(st.binary(max_size=200))
    after = draw(st.binary(max_size=200))
    text = "start\n" + wrapped(before + f"T={GH}".encode() + after, width) + "end\n"
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=10)))
    chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    releases = draw(st.lists(st.booleans(), min_size=len(chunks), max_size=len(chunks)))
    return text, chunks, releases


@settings(max_examples=300, deadline=None)
@given(wrapped_output_in_chunks())
def test_no_wrapped_base64_of_a_secret_survives_any_chunking_or_pause(case):
    """A stream holds back the full-width lines of a block that may go on; a pause releases all but the lines a
    secret's base64 could still reach, cut where no secret crosses."""
    text, chunks, releases = case
    stream = StreamMasker(Masker([GH]))
    out = ""
    for chunk, release in zip(chunks, releases, strict=True):
        out += stream.feed(chunk)
        if release:
            out += stream.release()
    out += stream.finish()
    assert not leaked_forms(GH, out)
    assert out.count("\n") == text.count("\n") and out.startswith("start\n") and out.endswith("end\n")


def test_a_long_wrapped_block_is_released_in_bounded_pieces_without_a_leak():
    text = wrapped(b"y" * 200_000 + GH.encode() + b"z" * 200_000, 76)
    stream = StreamMasker(Masker([GH]), max_line=4096)
    out, most_held = "", 0
    for i in range(0, len(text), 1000):
        out += stream.feed(text[i : i + 1000])
        most_held = max(most_held, stream.pending)
    out += stream.finish()
    assert most_held < 4096 + 2000 and not leaked_forms(GH, out) and out.count("\n") == text.count("\n")


# --- dumps, base32, reversal: the forms a tool call can print a value in, made by the real tools -------------------
def _hex_cells(text: str, *, offsets: bool) -> bytes:
    out = b""
    for line in text.splitlines():
        tokens = line.split("|")[0].split()[1 if offsets else 0 :]
        out += bytes.fromhex("".join(t for t in tokens if re.fullmatch(r"(?:[0-9a-f]{2})+", t)))
    return out


def _od_chars(text: str, *, offsets: bool) -> bytes:
    out = ""
    for line in text.splitlines():
        out += "".join(t for t in line.split()[1 if offsets else 0 :] if len(t) == 1)
    return out.encode()


def _joined(text: str) -> str:
    return "".join(line for line in text.splitlines() if MASK not in line)


def _b32(text: str) -> bytes:
    flat = _joined(text)
    return base64.b32decode(flat + "=" * (-len(flat) % 8))


DUMPS = {  # the tool (od and hexdump with -v: squeezed lines could not be read back), and how to read its output back
    "xxd": (["xxd"], lambda t: _hex_cells("\n".join(line[10:49] for line in t.splitlines()), offsets=False)),
    "xxd -p": (["xxd", "-p"], lambda t: bytes.fromhex(_joined(t))),
    "xxd -c 5": (
        ["xxd", "-c", "5"],
        lambda t: _hex_cells("\n".join(line[10:23] for line in t.splitlines()), offsets=False),
    ),
    "od -c": (["od", "-v", "-c"], lambda t: _od_chars(t, offsets=True)),
    "od -c -w3": (["od", "-v", "-c", "-w3"], lambda t: _od_chars(t, offsets=True)),
    "od -t x1": (["od", "-v", "-t", "x1"], lambda t: _hex_cells(t, offsets=True)),
    "od -tx1 -w5": (["od", "-v", "-tx1", "-w5"], lambda t: _hex_cells(t, offsets=True)),
    "hexdump -C": (["hexdump", "-v", "-C"], lambda t: _hex_cells(t, offsets=True)),
    "base32": (["base32"], _b32),
    "base32 -w 64": (["base32", "-w", "64"], _b32),
    "xxd -p -c 32": (["xxd", "-p", "-c", "32"], lambda t: bytes.fromhex(_joined(t))),
    "fold -w 80": (["fold", "-w", "80"], lambda t: _joined(t).encode()),
    "rev": (["rev"], lambda t: t[::-1].encode()),
}


def run_tool(command: list[str], data: bytes) -> str:
    if shutil.which(command[0]) is None:
        from tests.requirements import require

        require("ANYON_REQUIRE_SERVICES", f"{command[0]} is not installed (.ci/run installs it)")
    return subprocess.run(command, input=data, capture_output=True, check=True).stdout.decode()


def readable(tool: str, secret: str, text: str) -> bool:
    try:
        return secret.encode() in DUMPS[tool][1](text)
    except ValueError:  # what is left is no longer the tool's format: nothing to read back
        return False


@pytest.mark.parametrize("tool", sorted(DUMPS))
@pytest.mark.parametrize("secret", [PLAIN, GH, OAT])
def test_a_value_spread_by_a_dump_or_encoding_tool_is_masked(tool, secret):
    data = f"PATH=/usr/bin:/usr/local/bin:/bin\nTOKEN={secret}\nHOME=/home/anyon\n".encode()
    if tool.startswith("fold"):
        data = f"{'x' * 70} TOKEN={secret} and more\n".encode()
    out = run_tool(DUMPS[tool][0], data)
    assert readable(tool, secret, out), "the reader must be able to read the value back from the tool's output"
    masked = Masker([secret]).mask(out)
    assert MASK in masked and not readable(tool, secret, masked), masked
    for size in (1, 7, 64):  # the output in chunks of every size, without a pause
        stream = StreamMasker(Masker([secret]))
        streamed = "".join(stream.feed(out[i : i + size]) for i in range(0, len(out), size)) + stream.finish()
        assert not readable(tool, secret, streamed) and streamed.count("\n") == out.count("\n")


def test_a_paused_dump_keeps_the_lines_a_value_goes_on_from():
    out = run_tool(["xxd", "-p"], f"{'x' * 26}TOKEN={PLAIN}\n".encode())
    lines = out.splitlines(keepends=True)
    stream = StreamMasker(Masker([PLAIN]))
    released = stream.feed(lines[0]) + stream.release()  # a pause after the first bytes of the value
    assert PLAIN.encode()[:2].hex() not in released.replace("\n", "")
    released += stream.feed("".join(lines[1:])) + stream.finish()
    assert not readable("xxd -p", PLAIN, released) and released.count("\n") == out.count("\n")


def test_unknown_tokens_in_a_dump_or_folded_are_masked_by_their_pattern():
    for tool in ("xxd", "od -t x1", "hexdump -C", "od -c"):
        out = run_tool(DUMPS[tool][0], f"x {GH} y\n".encode())
        assert readable(tool, GH, out) and not readable(tool, GH, Masker().mask(out)), tool


def test_ordinary_output_with_dump_shaped_lines_is_left_alone():
    text = "a b c d\n0000000 1 2\ndeadbeef cafe\nok\nDone\n" + "\n".join(f"{i:040x}" for i in range(50)) + "\n"
    assert Masker([PLAIN, GH]).mask(text) == text
    stream = StreamMasker(Masker([PLAIN, GH]))
    assert stream.feed(text) + stream.release() == text  # a pause releases what no value goes on from
