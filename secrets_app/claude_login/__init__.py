"""The Claude subscription login: ``claude setup-token`` driven through a pseudo-terminal from a websocket
(docs/ARCHITECTURE.md, "The Claude login"). Pasted keys and tokens are ``secrets_app.anthropic_credentials``."""

from __future__ import annotations

import asyncio

from secrets_app.claude_login.actions import do_cancel_login, do_send_login_code, do_start_subscription_login
from secrets_app.claude_login.session import LoginSession, State
from secrets_app.claude_login.sessions import current_session


def attach(session: LoginSession, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue) -> None:
    """Send the login's updates to ``queue`` (a consumer's, on ``loop``)."""
    session.listeners.add(loop, queue)


def detach(session: LoginSession, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue) -> None:
    session.listeners.remove(loop, queue)


__all__ = [
    "LoginSession",
    "State",
    "attach",
    "current_session",
    "detach",
    "do_cancel_login",
    "do_send_login_code",
    "do_start_subscription_login",
]
