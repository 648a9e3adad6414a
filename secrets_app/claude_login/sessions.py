"""The logins of this web process: one per user (a refreshed page re-attaches to it), and how many each user
started in the last minute (``ANYON_CLAUDE_LOGIN_STARTS_PER_MINUTE``). Deploy one web process, or sticky sessions,
so a user reaches their login."""

from __future__ import annotations

import threading
import time
from collections import deque

from django.conf import settings

from secrets_app.claude_login.session import LoginSession
from secrets_app.errors import ConnectError

_sessions: dict[int, LoginSession] = {}
#: When each user started their recent logins, for ``ANYON_CLAUDE_LOGIN_STARTS_PER_MINUTE``.
_starts: dict[int, deque[float]] = {}
_lock = threading.Lock()


def current_session(user_id: int) -> LoginSession | None:
    """The user's running login (None once it ended)."""
    with _lock:
        session = _sessions.get(user_id)
    return session if session and not session.final else None


def _count_start(user_id: int) -> None:
    """Count a login start, or raise ConnectError when the user already started the most a minute allows. Called
    with the lock held."""
    limit = settings.ANYON_CLAUDE_LOGIN_STARTS_PER_MINUTE
    if limit <= 0:
        return
    now = time.monotonic()
    recent = _starts.setdefault(user_id, deque())
    while recent and now - recent[0] >= 60:
        recent.popleft()
    if len(recent) >= limit:
        wait = max(1, int(60 - (now - recent[0])) + 1)
        raise ConnectError(
            f"Too many Claude logins started: at most {limit} a minute. Wait {wait} s, then start again."
        )
    recent.append(now)


def register_new(user_id: int) -> tuple[LoginSession, LoginSession | None]:
    """Count the start (ConnectError past the limit, nothing changed) and make a new login the user's; returns it
    and the one it replaces (not stopped yet)."""
    with _lock:
        _count_start(user_id)
        old = _sessions.get(user_id)
        session = LoginSession(user_id=user_id)
        _sessions[user_id] = session
    return session, old
