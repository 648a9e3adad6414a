from django import template

from execution import prompts

register = template.Library()


@register.filter
def printable_prompt(prompt: str) -> str:
    """A NUL in a prompt shown as ␀ (HTML cannot carry it)."""
    return prompts.printable(prompt)
