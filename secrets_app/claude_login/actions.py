"""What views and consumers do to a login. Its state lives in this process (not in rows): the one row it writes,
the token, goes through ``secret_store.do_store_secret``, which wakes the settings cards on commit."""

from __future__ import annotations

from secrets_app.claude_login import sessions
from secrets_app.claude_login.session import LoginSession, State
from secrets_app.errors import ConnectError
from secrets_app.events import wake_settings_viewers
from secrets_app.models import Provider


def do_start_subscription_login(*, user_id: int) -> LoginSession:
    """One login per user: a running one is replaced (its process and container stopped). At most
    ``ANYON_CLAUDE_LOGIN_STARTS_PER_MINUTE`` starts a minute per user: past that ConnectError, and the running login
    (if any) is left alone."""
    session, old = sessions.register_new(user_id)
    if old and not old.final:
        old.finish(State.CANCELLED, "Replaced by a new login.")
    wake_settings_viewers(user_id=user_id, provider=Provider.CLAUDE)
    session.start()
    return session


def do_send_login_code(*, session: LoginSession | None, code: object) -> None:
    """Type the pasted ``<code>#<state>`` into the CLI; ConnectError when no login waits for one or it is malformed."""
    if session is None or session.final:
        raise ConnectError("There is no login waiting for a code. Start again.")
    if not isinstance(code, str):
        raise ConnectError("Paste the code.")
    session.send_code(code)


def do_cancel_login(*, session: LoginSession | None) -> None:
    if session is None or session.final:
        raise ConnectError("There is no login to cancel.")
    session.finish(State.CANCELLED, "Login cancelled.")
