"""Websockets of the General Settings page: the Claude login session, and live cards.

Both refuse unauthenticated connections. Every client message is JSON with a ``type``; anything malformed,
oversized or out of order gets an ``error`` message, never a crash.
"""

from __future__ import annotations

import asyncio
from http.cookies import SimpleCookie

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.conf import settings
from django.template.loader import render_to_string

from secrets_app import anthropic_credentials, claude_login, selectors
from secrets_app.errors import ConnectError
from secrets_app.events import settings_group
from secrets_app.forms import PersonalAccessTokenForm
from secrets_app.models import Kind
from shared.live.consumer import JsonConsumer

METHODS = {"subscription", "api_key", "token"}


class ClaudeLoginConsumer(JsonConsumer):
    """client → server: start {method, value?}, code {code}, cancel; server → client: status, url, output,
    need_code, saved, error."""

    session: claude_login.LoginSession | None = None

    async def connect(self) -> None:
        self.user = self.scope.get("user")
        if self.user is None or not self.user.is_authenticated:
            await self.close(code=4401)
            return
        if not await self.admit():
            return
        self.queue: asyncio.Queue = asyncio.Queue()
        self.pump = asyncio.create_task(self._pump())
        session = claude_login.current_session(self.user.pk)
        if session:  # a refreshed page re-attaches to the running login
            self._attach(session)
            for message in session.snapshot():
                await self.send_json(message)
        else:
            await self.send_json({"type": "status", "state": "idle", "message": ""})

    def _attach(self, session: claude_login.LoginSession) -> None:
        self.session = session
        claude_login.attach(session, asyncio.get_running_loop(), self.queue)

    async def disconnect(self, code: int) -> None:
        if self.session is not None:
            claude_login.detach(self.session, asyncio.get_running_loop(), self.queue)
        if hasattr(self, "pump"):
            self.pump.cancel()
        await super().disconnect(code)

    async def sign_out(self) -> None:
        if hasattr(self, "pump"):
            self.pump.cancel()  # nothing more of the login goes to a signed-out socket
        await super().sign_out()

    async def _pump(self) -> None:
        while True:
            await self.send_json(await self.queue.get())

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        message = await self.parse(text_data, bytes_data)
        if message is None:
            return
        handler = {"start": self.on_start, "code": self.on_code, "cancel": self.on_cancel}.get(message["type"])
        if handler is None:
            await self.send_error(f"unknown message type {message['type'][:40]!r}")
            return
        try:
            await handler(message)
        except ConnectError as exc:
            await self.send_error(str(exc))

    async def on_start(self, message: dict) -> None:
        method = message.get("method")
        if method not in METHODS:
            raise ConnectError("Choose a method: subscription, api_key or token.")
        if method == "subscription":
            session = await sync_to_async(claude_login.do_start_subscription_login, thread_sensitive=False)(
                user_id=self.user.pk
            )
            self._attach(session)
            for update in session.snapshot():
                await self.send_json(update)
            return
        value = message.get("value")
        if not isinstance(value, str):
            raise ConnectError("Paste the key or token.")
        kind = Kind.API_KEY if method == "api_key" else Kind.OAUTH_TOKEN
        await self.send_json({"type": "status", "state": "validating", "message": "Checking with Anthropic…"})
        await database_sync_to_async(anthropic_credentials.do_connect_anthropic_credential)(
            owner=self.user, value=value, kind=kind
        )
        await self.send_json({"type": "status", "state": "saved", "message": "Claude is connected."})
        await self.send_json({"type": "saved"})

    async def on_code(self, message: dict) -> None:
        await sync_to_async(claude_login.do_send_login_code, thread_sensitive=False)(
            session=self.session, code=message.get("code")
        )

    async def on_cancel(self, message: dict) -> None:
        await sync_to_async(claude_login.do_cancel_login, thread_sensitive=False)(session=self.session)


class SettingsConsumer(JsonConsumer):
    """Pushes the server-rendered card partials whenever the user's credentials change.

    Wake-ups come over the channel layer from this process family; a short database poll catches changes made
    elsewhere (the worker marking a token expired, staff revoking in the admin)."""

    POLL_SECONDS = 2.0

    async def connect(self) -> None:
        self.user = self.scope.get("user")
        if self.user is None or not self.user.is_authenticated:
            await self.close(code=4401)
            return
        await self.accept_and_follow(settings_group(self.user.pk), self.watch)

    async def settings_changed(self, event: dict) -> None:
        self.woken()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        message = await self.parse(text_data, bytes_data)
        if message is not None:
            await self.send_error("this socket only sends")

    def _version(self) -> tuple:
        login = claude_login.current_session(self.user.pk)
        return (*selectors.settings_version(owner=self.user), login.id if login else None)

    def _cards(self) -> dict[str, str]:
        cookies = SimpleCookie()
        for name, value in self.scope.get("headers", []):
            if name == b"cookie":
                cookies.load(value.decode("latin-1"))
        csrf = cookies.get(settings.CSRF_COOKIE_NAME)
        session = self.scope.get("session")
        context = selectors.settings_cards_context(
            owner=self.user,
            session_key=getattr(session, "session_key", None) or "",
            claude_login=claude_login.current_session(self.user.pk),
            pat_form=PersonalAccessTokenForm(),
        )
        context["csrf_token"] = csrf.value if csrf else ""
        return {p: render_to_string(f"secrets_app/cards/{p}.html", context) for p in ("github", "claude")}

    async def push_cards(self) -> None:
        for provider, html in (await database_sync_to_async(self._cards)()).items():
            await self.send_json({"type": "card", "provider": provider, "html": html})

    async def watch(self) -> None:
        version = await database_sync_to_async(self._version)()
        # Whatever changed between rendering the page and opening this socket is not lost.
        await self.push_cards()
        while True:
            await self.wait_for_wakeup(self.POLL_SECONDS)
            current = await database_sync_to_async(self._version)()
            if current != version:
                version = current
                await self.push_cards()
