"""Wake-ups between the processes of one host without Redis (web server and worker cluster)."""

#: The only messages that wake consumers (shared/live/events.py), and the only ones accepted from another process.
#: ``session.ended`` makes a user's sockets re-check their session (shared/live/sessions.py).
WAKE_TYPES = frozenset({"attempt.changed", "settings.changed", "session.ended", "environment.changed"})
