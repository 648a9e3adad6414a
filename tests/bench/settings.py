"""Settings of ``make bench``'s processes: the test settings plus the web process's query counter
(``tests/bench/query_counter.py``)."""

from tests.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.bench.query_counter.QueryCounter"]  # noqa: F405
