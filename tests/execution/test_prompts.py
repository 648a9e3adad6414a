"""How prompts are stored: every text comes back exactly, no stored text holds NUL, ordinary text is unchanged."""

from hypothesis import given, settings
from hypothesis import strategies as st

from execution.prompts import ESC, load, printable, store

# Text made mostly of the characters that matter here, so that escapes next to escapes are tried often.
tricky = st.text(alphabet=st.sampled_from(["\x00", ESC, "0", "a", "\n"]) | st.characters(), max_size=60)


@settings(deadline=None)  # a pause of the machine is not a failure
@given(tricky)
def test_every_prompt_comes_back_exactly(prompt):
    stored = store(prompt)
    assert load(stored) == prompt
    assert "\x00" not in stored


@settings(deadline=None)
@given(st.text(alphabet=st.characters(blacklist_characters=["\x00", ESC])))
def test_ordinary_prompts_are_stored_as_they_are(prompt):
    assert store(prompt) == prompt and load(prompt) == prompt


def test_a_lone_escape_left_by_hand_reads_as_itself():
    assert load(f"a{ESC}b") == f"a{ESC}b"


def test_printable_shows_nul_as_a_symbol():
    assert printable("a\x00b") == "a\u2400b"
