"""The pre-push guard over scripted ``git log`` output (the real push path is in test_sealed_docker.py)."""

from __future__ import annotations

import base64

import pytest

from execution.git import anyon_git
from execution.runner.push_guard import refusal
from shared.docker.engine import ContainerSpec
from shared.masking import Masker
from tests.fakes.docker_engine import FakeEngine, ScriptedExec
from tests.fakes.github import classic_token

pytestmark = pytest.mark.hostile  # attacks: counted in docs/QA_CHECKLIST.md

TOKEN = classic_token()


def guard(*chunks: bytes, exit_code: int = 0) -> str:
    engine = FakeEngine(lambda argv: ScriptedExec([("stdout", c) for c in chunks], exit_code=exit_code))
    container = engine.create_container(ContainerSpec(name="c", image="i", labels={}))
    reason = refusal(engine=engine, container_id=container, masker=Masker([TOKEN]), base="b" * 40, head="h" * 40)
    assert engine.execs == [anyon_git.guard_argv("b" * 40, "h" * 40)]  # Anyon's range, by id
    return reason


def test_clean_commits_pass():
    assert guard(b"commit abc\nAdd hello\n+def hello():\n") == ""


@pytest.mark.parametrize(
    "form",
    [
        TOKEN,
        base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode(),
        "ghp_" + "Q" * 36,  # a token nobody told the guard about
        "sk-ant-api03-" + "z" * 40,
    ],
    ids=["the token", "its base64", "an unknown ghp_ token", "an unknown Anthropic key"],
)
def test_a_credential_in_the_commits_refuses_the_push(form):
    reason = guard(b"commit abc\n+notes: ", form.encode(), b"\n")
    assert reason.startswith("Push refused") and "Nothing was pushed" in reason
    assert form not in reason and TOKEN not in reason


def test_a_token_split_across_two_chunks_is_still_found():
    half = len(TOKEN) // 2
    assert "a credential of this attempt" in guard(b"+x " + TOKEN[:half].encode(), TOKEN[half:].encode() + b"\n")


def test_commits_that_cannot_be_read_are_not_pushed():
    assert "could not be checked" in guard(b"fatal: bad object\n", exit_code=128)
