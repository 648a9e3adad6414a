"""Prompts reach the Claude CLI verbatim on its standard input (never through a shell or a command line).

Limits, checked here with a clear message: at most 1 MB (the CLI reads it whole; the form and the database keep it),
and no NUL character (text prompts never need one, and some tools in the path stop at it).
"""

from __future__ import annotations

from django.core.exceptions import ValidationError

MAX_PROMPT_BYTES = 1_000_000


def validate_prompt(raw: str) -> str:
    prompt = raw or ""
    if not prompt.strip():
        raise ValidationError("Write what Claude should do.")
    if "\x00" in prompt:
        raise ValidationError("The prompt contains a NUL character, which cannot be passed to a program.")
    size = len(prompt.encode("utf-8"))
    if size > MAX_PROMPT_BYTES:
        raise ValidationError(
            "The prompt is %(size)s bytes; the limit is %(limit)s. Put long material in the repository and point "
            "Claude at it.",
            params={"size": f"{size:,}", "limit": f"{MAX_PROMPT_BYTES:,}"},
        )
    return prompt
