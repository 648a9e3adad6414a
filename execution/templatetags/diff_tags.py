from django import template

from execution.git.diffs import line_class

register = template.Library()


@register.filter
def diff_lines(patch: str) -> list[tuple[str, str]]:
    """(css class, line) pairs of a unified diff, for syntax-neutral highlighting."""
    return [(line_class(line), line) for line in patch.splitlines()]
