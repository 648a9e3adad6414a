"""Turning "not yours or not there" into a 404, the same way in every view."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from django.core.exceptions import ObjectDoesNotExist
from django.http import Http404

T = TypeVar("T")


def found_or_404(selector: Callable[..., T], /, **kwargs) -> T:
    """Call a selector that raises ``DoesNotExist`` for what the user may not see; answer 404 instead."""
    try:
        return selector(**kwargs)
    except ObjectDoesNotExist as exc:
        raise Http404 from exc
