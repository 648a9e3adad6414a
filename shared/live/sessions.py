"""A live socket ends with the session that opened it (docs/ARCHITECTURE.md, "Live updates", Sessions)."""

from __future__ import annotations

from importlib import import_module

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, load_backend
from django.contrib.auth.signals import user_logged_out
from django.db.models.signals import post_delete, post_save
from django.utils.crypto import constant_time_compare, salted_hmac

from shared.live.events import wake_group

SESSION_ENDED = "session.ended"
#: The close code of a socket whose session ended (the same as a refused unauthenticated connect).
CLOSE_SIGNED_OUT = 4401


def user_group(user_id: int) -> str:
    return f"live.user.{user_id}"


def session_digest(session_key: str) -> str:
    return salted_hmac("anyon.live.session", session_key).hexdigest() if session_key else ""


def still_signed_in(*, user_id: int, session_key: str) -> bool:
    """Whether a socket user ``user_id`` opened with ``session_key`` may go on: the session still exists and has not
    expired, names the same user, that user is still allowed to sign in (active) and the password has not changed
    since. Read only: unlike ``django.contrib.auth.get_user`` it never flushes or cycles the session. A socket
    without a session has no sign-in to go on from."""
    if not session_key:
        return False
    data = import_module(settings.SESSION_ENGINE).SessionStore(session_key).load()  # {} if gone or expired
    if str(data.get(SESSION_KEY)) != str(user_id):
        return False
    backend_path = data.get(BACKEND_SESSION_KEY)
    if backend_path not in settings.AUTHENTICATION_BACKENDS:
        return False
    user = load_backend(backend_path).get_user(user_id)  # None once deactivated or deleted
    if user is None:
        return False
    stored = data.get(HASH_SESSION_KEY) or ""
    hashes = [user.get_session_auth_hash(), *user.get_session_auth_fallback_hash()]
    return bool(stored) and any(constant_time_compare(stored, h) for h in hashes)


def _logged_out(sender, request, user, **kwargs) -> None:
    if user is None:
        return
    key = getattr(getattr(request, "session", None), "session_key", None) or ""
    # Sent before Django flushes the session: the digest, not a database check, tells the sockets of this session.
    wake_group(user_group(user.pk), {"type": SESSION_ENDED, "session": session_digest(key)})


def _user_changed(sender, instance, update_fields=None, **kwargs) -> None:
    if update_fields is not None and set(update_fields) <= {"last_login"}:
        return  # every sign-in saves last_login: nothing a socket needs to re-check
    wake_group(user_group(instance.pk), {"type": SESSION_ENDED, "session": ""})


def connect_signals() -> None:
    """Called by ``SharedConfig.ready``."""
    user_logged_out.connect(_logged_out, dispatch_uid="shared.live.sessions.logged_out")
    post_save.connect(_user_changed, sender=settings.AUTH_USER_MODEL, dispatch_uid="shared.live.sessions.saved")
    post_delete.connect(_user_changed, sender=settings.AUTH_USER_MODEL, dispatch_uid="shared.live.sessions.deleted")
