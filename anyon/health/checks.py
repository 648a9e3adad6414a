"""The result of a check (:class:`Check` and its statuses) and the runner; no check raises."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # OK, WARN or FAIL
    detail: str
    fix: str = ""
    required: bool = True

    @property
    def failed(self) -> bool:
        return self.status == FAIL

    def as_dict(self) -> dict:
        return asdict(self)


def version_key(version: str) -> tuple[int, ...]:
    """``"1.48"`` as ``(1, 48)``: versions compare as numbers, not as decimals."""
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def run_checks(checks: list[Callable[[], Check]]) -> list[Check]:
    return [check() for check in checks]


#: The database cache (no REDIS_URL) keeps its values in a table that `migrate` does not create.
CACHE_TABLE_FIX = "python manage.py createcachetable"


def cache_error(exc: BaseException) -> str:
    """A cache read's error as one line; a missing cache table named as such."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "anyon_cache" in text and ("no such table" in text or "does not exist" in text):
        return "the cache table anyon_cache does not exist"
    return text
