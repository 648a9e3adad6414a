"""One subscription login: its state from start to saved (or failed, cancelled, timed out), driven by what the CLI
draws (screen.py) in its process (process.py), told to its listeners (listeners.py)."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone

from secrets_app.anthropic_credentials import TOKEN_LIFETIME
from secrets_app.claude_login.listeners import Listeners
from secrets_app.claude_login.process import Ended, LoginProcess, StartFailed
from secrets_app.claude_login.screen import Frame, Screen, is_code
from secrets_app.errors import ConnectError
from secrets_app.events import wake_settings_viewers
from secrets_app.models import Kind, Provider
from secrets_app.secret_store import do_store_secret
from shared.alerts import AlertKind, do_raise_alert
from shared.masking import Masker

logger = logging.getLogger(__name__)

MAX_TRANSCRIPT = 20_000


class State:
    STARTING = "starting"
    WAITING_CODE = "waiting_code"
    EXCHANGING = "exchanging"
    SAVED = "saved"
    ERROR = "error"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    FINAL = ("saved", "error", "cancelled", "timed_out")


@dataclass
class LoginSession:
    user_id: int
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    state: str = State.STARTING
    url: str = ""
    message: str = ""
    transcript: str = ""
    started: float = field(default_factory=time.monotonic)
    listeners: Listeners = field(default_factory=Listeners)
    process: LoginProcess = field(init=False)  # named after the session: made in __post_init__
    masker: Masker = field(default_factory=Masker)
    secrets: tuple[str, ...] = ()  # the pasted code and the token: masked in the transcript
    screen: Screen = field(default_factory=Screen)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.process = LoginProcess(self.id)

    # --- what consumers see -------------------------------------------------------------------------------------
    def snapshot(self) -> list[dict]:
        """Messages that bring a (re)attaching viewer up to date."""
        messages = [{"type": "status", "state": self.state, "message": self.message}]
        if self.transcript:
            messages.append({"type": "output", "text": self.transcript, "replace": True})
        if self.url:
            messages.append({"type": "url", "url": self.url})
        if self.state == State.WAITING_CODE:
            messages.append({"type": "need_code"})
        return messages

    def emit(self, message: dict) -> None:
        self.listeners.publish(message)

    def set_state(self, state: str, message: str = "") -> None:
        self.state, self.message = state, message
        self.emit({"type": "status", "state": state, "message": message})

    @property
    def final(self) -> bool:
        return self.state in State.FINAL

    # --- the process --------------------------------------------------------------------------------------------
    def start(self) -> None:
        try:
            self.process.start()
        except StartFailed as exc:
            self.fail(f"The login command could not start: {exc}")
            return
        threading.Thread(target=self._read, name=f"claude-login-{self.id}", daemon=True).start()

    def _read(self) -> None:
        while not self.final:
            try:
                chunk = self.process.read()
            except Ended:
                self._on_exit()
                return
            if chunk is None:
                self._check_deadline()
                continue
            self._on_output(chunk)

    def _on_output(self, chunk: str) -> None:
        with self._lock:
            frame = self.screen.feed(chunk)
        token = frame.printed_token() if self.state == State.EXCHANGING else None
        if token:
            self.secrets = (*self.secrets, token)
            self.masker = Masker(self.secrets)
        visible = self.masker.mask(frame.clean)[-MAX_TRANSCRIPT:]
        if visible != self.transcript:
            self.transcript = visible
            self.emit({"type": "output", "text": visible, "replace": True})
        if not self.url:
            found = frame.authorize_url()
            if found:
                self.url = found
                self.emit({"type": "url", "url": self.url})
        if self.state == State.STARTING and self.url and frame.shows_prompt():
            self.set_state(State.WAITING_CODE, "Open the link, approve, and paste the code shown.")
            self.emit({"type": "need_code"})
        if token:
            self._save(token)
        elif self.state == State.EXCHANGING:
            error = frame.oauth_error_after_code()
            if error:  # the CLI stays open after it ("Press Enter to retry"): end the login here
                self.fail(f"Login failed: {self.masker.mask(error)}")

    def send_code(self, code: str) -> None:
        if self.state != State.WAITING_CODE:
            raise ConnectError("No code is expected now.")
        code = code.strip()
        if not is_code(code):
            raise ConnectError("Paste the whole code shown by Claude: it looks like abc123…#xyz789….")
        self.secrets = (*self.secrets, code)
        self.masker = Masker(self.secrets)
        with self._lock:
            self.screen.code_sent()
        self.set_state(State.EXCHANGING, "Exchanging the code for a token…")
        self.process.send(code + "\r")  # Enter in a raw terminal; a cooked one (the fake CLI) turns it into \n

    def _save(self, token: str) -> None:
        user = get_user_model().objects.get(pk=self.user_id)
        do_store_secret(
            owner=user,
            provider=Provider.CLAUDE,
            kind=Kind.OAUTH_TOKEN,
            value=token,
            expires_at=timezone.now() + TOKEN_LIFETIME,
        )
        self.finish(State.SAVED, "Claude is connected with your subscription.")
        self.emit({"type": "saved"})

    def _on_exit(self) -> None:
        if self.final:
            return
        with self._lock:
            frame: Frame = self.screen.frame()
        error = frame.last_error_line()
        detail = self.masker.mask(error) if error else "the login command ended without a token"
        self.fail(f"Login failed: {detail}")

    def _check_deadline(self) -> None:
        now = time.monotonic()
        orphaned_since = self.listeners.orphaned_since
        if now - self.started > settings.ANYON_CLAUDE_LOGIN_TIMEOUT:
            self.finish(State.TIMED_OUT, "The login waited too long and was stopped. Start again.")
        elif orphaned_since and now - orphaned_since > settings.ANYON_CLAUDE_LOGIN_GRACE:
            self.finish(State.CANCELLED, "The page was closed; the login was stopped.")

    def fail(self, message: str) -> None:
        if self.final:
            return
        do_raise_alert(
            kind=AlertKind.CLAUDE_LOGIN_FAILED,
            message=f"user {self.user_id}: {message}"[:1000],
            dedupe_key=f"claude_login_failed:{self.user_id}",
        )
        self.finish(State.ERROR, message)

    def finish(self, state: str, message: str) -> None:
        """End the login (saved, failed, cancelled, timed out): the CLI and its container are gone before the final
        state is announced, so a login never outlives its page in a container waiting for the cleanup sweep."""
        with self._lock:
            if self.final:
                return
            # Final from here on: the reader stops, and the CLI's exit below is not taken for a failure.
            self.state, self.message = state, message
        self.process.stop()
        self.emit({"type": "status", "state": state, "message": message})
        wake_settings_viewers(user_id=self.user_id, provider=Provider.CLAUDE)
