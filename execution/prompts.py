"""Prompts reach the Claude CLI verbatim on its standard input (never through a shell or a command line).

Any text is accepted, NUL characters included (standard input carries them; only a command line cannot), up to
1 MB: the CLI reads it whole, and the form and the database keep it. PostgreSQL text cannot hold NUL, so
``PromptField`` stores it escaped and gives back the exact prompt on every database.
"""

from __future__ import annotations

import re

from django import forms
from django.core import validators
from django.core.exceptions import ValidationError
from django.db import models

MAX_PROMPT_BYTES = 1_000_000

#: The last private-use character starts an escape in the stored text: ESC ESC is ESC itself and ESC "0" is NUL.
#: Prompts without either (all real ones) are stored as they are, so SQL sees the same text. Pattern lookups
#: (``contains`` and the like) get their value unescaped from Django: search for text without NUL or ESC.
ESC = "\U0010fffd"
_ESCAPED = re.compile(ESC + "(.)", re.DOTALL)


def validate_prompt(raw: str) -> str:
    prompt = raw or ""
    if not prompt.replace("\x00", "").strip():
        raise ValidationError("Write what Claude should do.")
    size = len(prompt.encode("utf-8"))
    if size > MAX_PROMPT_BYTES:
        raise ValidationError(
            "The prompt is %(size)s bytes; the limit is %(limit)s. Put long material in the repository and point "
            "Claude at it.",
            params={"size": f"{size:,}", "limit": f"{MAX_PROMPT_BYTES:,}"},
        )
    return prompt


def printable(prompt: str) -> str:
    """The prompt where it only describes the work (a commit message, a pull request body): NUL shown as ␀."""
    return prompt.replace("\x00", "\u2400")


def store(prompt: str) -> str:
    if ESC not in prompt and "\x00" not in prompt:
        return prompt
    return prompt.replace(ESC, ESC + ESC).replace("\x00", ESC + "0")


def load(stored: str) -> str:
    if ESC not in stored:
        return stored
    return _ESCAPED.sub(lambda m: ESC if m[1] == ESC else "\x00" if m[1] == "0" else m[0], stored)


class PromptFormField(forms.CharField):
    """A textarea that keeps the prompt exactly: no stripping, NUL allowed, the byte limit checked."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("widget", forms.Textarea)
        kwargs.setdefault("max_length", 4 * MAX_PROMPT_BYTES)  # characters; bytes are checked in validate_prompt
        super().__init__(strip=False, **kwargs)
        self.validators = [v for v in self.validators if not isinstance(v, validators.ProhibitNullCharactersValidator)]

    def to_python(self, value):
        """A browser sends a textarea's line breaks as CRLF (HTML spec); the user typed LF, and so Claude reads it."""
        return super().to_python(value).replace("\r\n", "\n")

    def clean(self, value):
        return validate_prompt(super().clean(value))


class PromptField(models.TextField):
    """A prompt stored so that every database gives it back exactly (see ``store``)."""

    def from_db_value(self, value, expression, connection):
        return value if value is None else load(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        return value if value is None else store(value)

    def formfield(self, **kwargs):
        return super().formfield(**{"form_class": PromptFormField, **kwargs})
