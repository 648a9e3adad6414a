"""Dates shown to people: the calendar day of an instant in the site's time zone (``TIME_ZONE``).

Pages format instants with Django's ``|date`` filter, which converts to the site's time zone; a message built in
Python must do the same, or a token that expires at 03:00 UTC shows as "the 1st" in the banner and "the 28th,
19:00" on the card of a site in California.
"""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone


def local_day(when: datetime) -> str:
    """``YYYY-MM-DD`` of ``when`` (an aware instant) in the site's time zone."""
    return f"{timezone.localtime(when):%Y-%m-%d}"


def days_until(when: datetime, now: datetime | None = None) -> int:
    """Calendar days from ``now`` to ``when`` in the site's time zone, never below 0.

    The count agrees with the date shown next to it: a token that expires the day after tomorrow "expires in 2
    days" whatever the hour, where the whole days of the remaining time would say 1 one second after it was made.
    """
    now = now or timezone.now()
    return max(0, (timezone.localtime(when).date() - timezone.localtime(now).date()).days)
