"""Prompts are passed to the Claude CLI verbatim as one argv element (never through a shell).

That puts two hard limits on them: an argument cannot contain a NUL byte, and Linux caps one argument at 128 KiB
(MAX_ARG_STRLEN). Prompts are checked here, with a clear message, instead of failing inside the container.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError

MAX_PROMPT_BYTES = 100_000


def validate_prompt(raw: str) -> str:
    prompt = raw or ""
    if not prompt.strip():
        raise ValidationError("Write what Claude should do.")
    if "\x00" in prompt:
        raise ValidationError("The prompt contains a NUL character, which cannot be passed to a program.")
    size = len(prompt.encode("utf-8"))
    if size > MAX_PROMPT_BYTES:
        raise ValidationError(
            "The prompt is %(size)s bytes; the limit is %(limit)s (one program argument). Put long material in "
            "the repository and point Claude at it.",
            params={"size": f"{size:,}", "limit": f"{MAX_PROMPT_BYTES:,}"},
        )
    return prompt
