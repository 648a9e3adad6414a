"""Moves the wall clock of every Python process of a test run by ``ANYON_TEST_CLOCK_SHIFT_DAYS`` days.

Put this folder on ``PYTHONPATH`` (``make test-future`` does) and each Python process the suite starts (pytest, the
live servers, workers, the egress proxy) imports it at start-up and travels the same number of days ahead of the
real clock, ticking on from there. Only the wall clock moves (``time.time``, ``datetime.now``, ``date.today`` and
friends); ``time.monotonic`` and ``sleep`` stay real, so timeouts behave as they do on any other day. A test that
compares a fixed date with the clock fails here the day it is written, not the day the date passes.
"""

from __future__ import annotations

import os


def _travel() -> None:
    days = os.environ.get("ANYON_TEST_CLOCK_SHIFT_DAYS", "").strip()
    if not days:
        return
    from datetime import UTC, datetime, timedelta

    import time_machine

    destination = datetime.now(UTC) + timedelta(days=float(days))
    traveller = time_machine.travel(destination, tick=True)
    traveller.start()  # for the life of the process: never stopped


_travel()
