"""Calendar days shown to people follow the site's time zone, at midnight UTC, month ends and leap days."""

from datetime import UTC, datetime

import pytest
import time_machine

from shared.dates import days_until, local_day


@pytest.mark.parametrize(
    ("instant", "zone", "day"),
    [
        (datetime(2027, 3, 1, 3, 0, tzinfo=UTC), "UTC", "2027-03-01"),
        (datetime(2027, 3, 1, 3, 0, tzinfo=UTC), "America/Los_Angeles", "2027-02-28"),
        (datetime(2028, 3, 1, 3, 0, tzinfo=UTC), "America/Los_Angeles", "2028-02-29"),
        (datetime(2027, 12, 31, 23, 30, tzinfo=UTC), "Asia/Tokyo", "2028-01-01"),
    ],
)
def test_the_day_of_an_instant_is_the_sites(settings, instant, zone, day):
    settings.TIME_ZONE = zone
    assert local_day(instant) == day


def test_days_until_counts_calendar_days_across_a_month_end_at_midnight(settings):
    settings.TIME_ZONE = "UTC"
    with time_machine.travel(datetime(2027, 1, 31, 23, 59, 50, tzinfo=UTC), tick=False):
        assert days_until(datetime(2027, 2, 1, 0, 0, 5, tzinfo=UTC)) == 1  # tomorrow, 15 s from now
        assert days_until(datetime(2027, 1, 31, 23, 59, 59, tzinfo=UTC)) == 0  # later today
        assert days_until(datetime(2027, 3, 3, 0, 0, tzinfo=UTC)) == 31
        assert days_until(datetime(2027, 1, 1, tzinfo=UTC)) == 0  # past: never negative


def test_days_until_uses_the_sites_day_not_utcs(settings):
    settings.TIME_ZONE = "America/Los_Angeles"  # 2027-01-31 20:00 there
    with time_machine.travel(datetime(2027, 2, 1, 4, 0, tzinfo=UTC), tick=False):
        assert days_until(datetime(2027, 2, 1, 9, 0, tzinfo=UTC)) == 1  # 01:00 on the 1st there
        assert days_until(datetime(2027, 2, 1, 7, 0, tzinfo=UTC)) == 0  # 23:00 on the 31st there
