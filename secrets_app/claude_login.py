# Long because driving the CLI in a PTY (start, screen parsing, code entry, cleanup) is one session (to be split).
"""The Claude subscription login: ``claude setup-token`` driven through a pseudo-terminal from a websocket.

The server starts ``ANYON_CLAUDE_LOGIN_COMMAND`` (by default ``claude setup-token`` in a fresh container of the
runtime image) in a wide PTY, strips ANSI and spinner output (terminal_output.py), finds the authorize URL and the
paste prompt, writes the user's ``<code>#<state>`` to it, and stores the printed ``sk-ant-oat01-`` token. Pasted keys
and tokens are anthropic_credentials.py.

Both CLI generations are read (raw screens in tests/fixtures/transcripts/setup-token/): 2.0.31 prints the full
authorize URL and ``Paste code here if prompted >``; 2.1.x separates words by cursor moves (``ESC[<n>G``), wraps
the (shorter) URL in an OSC 8 hyperlink, and draws the prompt above a boxed input line. Both submit the code on a
carriage return (what Enter sends in a raw terminal; 2.1.x ignores a line feed), and both stay open after an
``OAuth error`` ("Press Enter to retry"), which therefore ends the login here.

Sessions live in the web process (one per user; a refreshed page re-attaches). Listeners are asyncio queues of
websocket consumers; the reader thread hands them messages with ``call_soon_threadsafe``. A session with no
listener is cancelled after ``ANYON_CLAUDE_LOGIN_GRACE`` seconds (tab closed); every session ends after
``ANYON_CLAUDE_LOGIN_TIMEOUT``. Deploy one web process, or sticky sessions, so a user reaches their session.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shlex
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field

import pexpect
from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone

from secrets_app.anthropic_credentials import OAUTH_TOKEN, TOKEN_LIFETIME
from secrets_app.errors import ConnectError
from secrets_app.events import wake_settings_viewers
from secrets_app.models import Kind, Provider
from secrets_app.secret_store import do_store_secret
from secrets_app.terminal_output import ANSI, CURSOR_GAP, SPINNER, clean_terminal_output
from shared.masking import Masker

logger = logging.getLogger(__name__)

AUTHORIZE_URL = re.compile(r"https://\S+/oauth/authorize\?\S+(?=\s)")  # complete: followed by the line end
#: The target of an OSC 8 hyperlink to the authorize page (complete: the sequence is closed).
AUTHORIZE_LINK = re.compile(
    r"\x1b\]8;[^;\x07\x1b]*;(https://[^\s\x07\x1b]+/oauth/authorize\?[^\s\x07\x1b]+)(?:\x07|\x1b\\)"
)
#: An OAuth error line, complete (its CR or LF has arrived). Searched in output where CR ends a line: 2.1.x
#: follows the error with CR and a cursor move, which the redraw logic of clean_terminal_output would erase.
OAUTH_ERROR = re.compile(r"OAuth error[^\r\n]*(?=[\r\n])", re.IGNORECASE)
CODE = re.compile(r"^[A-Za-z0-9_-]{4,}#[A-Za-z0-9_-]{4,}$")
PROMPT = "Paste code here"
MAX_TRANSCRIPT = 20_000
LATE_CONTAINER_CHECK = 5.0  # seconds after the end of a login whose container was not found yet


class State:
    STARTING = "starting"
    WAITING_CODE = "waiting_code"
    EXCHANGING = "exchanging"
    SAVED = "saved"
    ERROR = "error"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    FINAL = ("saved", "error", "cancelled", "timed_out")


def login_container_name(session_id: str) -> str:
    return f"anyon-login-{session_id}"


def login_argv(session_id: str) -> list[str]:
    """The login command, with {name}, {image}, {instance}, {network}, {memory}, {pids} filled in (each argv item
    separately). A ``docker run`` that sets no memory or process limit gets ANYON_CLAUDE_LOGIN_MEMORY and
    ANYON_CLAUDE_LOGIN_PIDS: one user's login cannot take the host's memory or processes."""
    values = {
        "name": login_container_name(session_id),
        "image": settings.ANYON_CLOUD_IMAGE,
        "instance": settings.ANYON_INSTANCE,
        "network": settings.ANYON_CLAUDE_LOGIN_NETWORK,
        "memory": settings.ANYON_CLAUDE_LOGIN_MEMORY,
        "pids": str(settings.ANYON_CLAUDE_LOGIN_PIDS),
    }
    argv = [part.format(**values) for part in shlex.split(settings.ANYON_CLAUDE_LOGIN_COMMAND)]
    if len(argv) > 2 and argv[:2] == ["docker", "run"]:
        limits = []
        if not any(arg == "--memory" or arg.startswith(("--memory=", "-m")) for arg in argv):
            memory = settings.ANYON_CLAUDE_LOGIN_MEMORY
            limits += ["--memory", memory, "--memory-swap", memory]  # the same value: no swap on top
        if not any(arg == "--pids-limit" or arg.startswith("--pids-limit=") for arg in argv):
            limits += ["--pids-limit", str(settings.ANYON_CLAUDE_LOGIN_PIDS)]
        argv[2:2] = limits
    return argv


@dataclass
class LoginSession:
    user_id: int
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    state: str = State.STARTING
    url: str = ""
    message: str = ""
    transcript: str = ""
    started: float = field(default_factory=time.monotonic)
    listeners: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = field(default_factory=list)
    orphaned_since: float | None = None
    child: pexpect.spawn | None = None
    masker: Masker = field(default_factory=Masker)
    secrets: tuple[str, ...] = ()  # the pasted code and the token: masked in the transcript
    _raw: str = ""
    _raw_at_code: int = 0  # how much output there was when the code was sent (errors count only after it)
    _lock: threading.Lock = field(default_factory=threading.Lock)

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
        for loop, queue in list(self.listeners):
            try:
                loop.call_soon_threadsafe(queue.put_nowait, message)
            except RuntimeError:  # that consumer's loop is gone
                self.listeners.remove((loop, queue))

    def set_state(self, state: str, message: str = "") -> None:
        self.state, self.message = state, message
        self.emit({"type": "status", "state": state, "message": message})

    @property
    def final(self) -> bool:
        return self.state in State.FINAL

    # --- the process --------------------------------------------------------------------------------------------
    def start(self) -> None:
        argv = login_argv(self.id)
        try:
            self.child = pexpect.spawn(
                argv[0], argv[1:], dimensions=(50, 4000), encoding="utf-8", codec_errors="replace", echo=False
            )
        except (pexpect.ExceptionPexpect, OSError) as exc:
            self.fail(f"The login command could not start: {exc}")
            return
        threading.Thread(target=self._read, name=f"claude-login-{self.id}", daemon=True).start()

    def _read(self) -> None:
        child = self.child
        while not self.final:
            try:
                chunk = child.read_nonblocking(4096, timeout=0.2)
            except pexpect.TIMEOUT:
                self._check_deadline()
                continue
            except pexpect.EOF:
                self._on_exit()
                return
            self._on_output(chunk)

    def _on_output(self, chunk: str) -> None:
        with self._lock:
            kept = (self._raw + chunk)[-200_000:]
            self._raw_at_code = max(0, self._raw_at_code - (len(self._raw) + len(chunk) - len(kept)))
            self._raw = kept
            raw = self._raw
            clean = clean_terminal_output(raw)
        token = self._printed_token(clean, raw) if self.state == State.EXCHANGING else None
        if token:
            self.secrets = (*self.secrets, token)
            self.masker = Masker(self.secrets)
        visible = self.masker.mask(clean)[-MAX_TRANSCRIPT:]
        if visible != self.transcript:
            self.transcript = visible
            self.emit({"type": "output", "text": visible, "replace": True})
        if not self.url:
            link = AUTHORIZE_LINK.search(raw)  # the hyperlink's target, when the CLI draws one (2.1.x)
            found = link.group(1) if link else (m.group(0) if (m := AUTHORIZE_URL.search(clean)) else "")
            if found:
                self.url = found
                self.emit({"type": "url", "url": self.url})
        if self.state == State.STARTING and self.url and PROMPT in clean:
            self.set_state(State.WAITING_CODE, "Open the link, approve, and paste the code shown.")
            self.emit({"type": "need_code"})
        if token:
            self._save(token)
        elif self.state == State.EXCHANGING:
            after = SPINNER.sub("", ANSI.sub("", CURSOR_GAP.sub(" ", raw[self._raw_at_code :])))
            error = OAUTH_ERROR.search(after)
            if error:  # the CLI stays open after it ("Press Enter to retry"): end the login here
                self.fail(f"Login failed: {self.masker.mask(error.group(0).strip())}")

    @staticmethod
    def _printed_token(clean: str, raw: str) -> str | None:
        """The token, once its end is there: in the raw output a character that cannot be part of it follows
        (the cleaned text drops trailing blanks and sequences, so it cannot tell a whole token from a cut one)."""
        for found in OAUTH_TOKEN.finditer(clean):
            if re.search(re.escape(found.group(0)) + r"(?=[^A-Za-z0-9_-])", raw):
                return found.group(0)
        return None

    def send_code(self, code: str) -> None:
        if self.state != State.WAITING_CODE:
            raise ConnectError("No code is expected now.")
        code = code.strip()
        if not CODE.match(code) or len(code) > 2000:
            raise ConnectError("Paste the whole code shown by Claude: it looks like abc123…#xyz789….")
        self.secrets = (*self.secrets, code)
        self.masker = Masker(self.secrets)
        with self._lock:
            self._raw_at_code = len(self._raw)
        self.set_state(State.EXCHANGING, "Exchanging the code for a token…")
        self.child.send(code + "\r")  # Enter in a raw terminal; a cooked one (the fake CLI) turns it into \n

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
        clean = clean_terminal_output(self._raw)
        errors = [line.strip() for line in clean.splitlines() if "error" in line.lower()]
        detail = self.masker.mask(errors[-1]) if errors else "the login command ended without a token"
        self.fail(f"Login failed: {detail}")

    def _check_deadline(self) -> None:
        now = time.monotonic()
        if now - self.started > settings.ANYON_CLAUDE_LOGIN_TIMEOUT:
            self.finish(State.TIMED_OUT, "The login waited too long and was stopped. Start again.")
        elif self.orphaned_since and now - self.orphaned_since > settings.ANYON_CLAUDE_LOGIN_GRACE:
            self.finish(State.CANCELLED, "The page was closed; the login was stopped.")

    def fail(self, message: str) -> None:
        from shared.alerts import AlertKind, do_raise_alert

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
        self._stop_process()
        self.emit({"type": "status", "state": state, "message": message})
        wake_settings_viewers(user_id=self.user_id, provider=Provider.CLAUDE)

    def _stop_process(self) -> None:
        """Kill the CLI and, when it ran in a container, remove the container (killing the docker client alone
        would leave it running)."""
        if self.child is not None and self.child.isalive():
            try:
                self.child.terminate(force=True)
            except Exception:
                logger.debug("terminating login %s failed", self.id, exc_info=True)
        if not self._remove_container():
            # The docker client may have been killed while its create request was on the way: look once more
            # when that container would exist.
            timer = threading.Timer(LATE_CONTAINER_CHECK, self._remove_container)
            timer.daemon = True
            timer.start()

    def _remove_container(self) -> bool:
        """Remove this login's container (SIGKILL, no grace: it holds nothing to keep). True if there was one."""
        if "{name}" not in settings.ANYON_CLAUDE_LOGIN_COMMAND:
            return True  # a command that names no container (the CLI on the host, as in tests): nothing to remove
        try:
            from shared.docker.engine import DockerEngine

            engine = DockerEngine()
            info = engine.inspect(login_container_name(self.id))
            if info:
                engine.stop_and_remove(info["Id"], timeout=0)
            return info is not None
        except Exception:
            logger.warning("could not remove the login container of %s", self.id, exc_info=True)
            return False


_sessions: dict[int, LoginSession] = {}
_registry_lock = threading.Lock()


def current_session(user_id: int) -> LoginSession | None:
    with _registry_lock:
        session = _sessions.get(user_id)
    return session if session and not session.final else None


#: When each user started their recent logins (this process), for ``ANYON_CLAUDE_LOGIN_STARTS_PER_MINUTE``.
_starts: dict[int, deque[float]] = {}


def _count_start(user_id: int) -> None:
    """Count a login start, or raise ConnectError when the user already started the most a minute allows. Called
    with the registry lock held."""
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


def start_subscription_login(user_id: int) -> LoginSession:
    """One login per user: a running one is replaced (its process and container stopped). At most
    ``ANYON_CLAUDE_LOGIN_STARTS_PER_MINUTE`` starts a minute per user: past that ConnectError, and the running login
    (if any) is left alone."""
    with _registry_lock:
        _count_start(user_id)
        old = _sessions.get(user_id)
        session = LoginSession(user_id=user_id)
        _sessions[user_id] = session
    if old and not old.final:
        old.finish(State.CANCELLED, "Replaced by a new login.")
    wake_settings_viewers(user_id=user_id, provider=Provider.CLAUDE)
    session.start()
    return session


def attach(session: LoginSession, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue) -> None:
    session.listeners.append((loop, queue))
    session.orphaned_since = None


def detach(session: LoginSession, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue) -> None:
    if (loop, queue) in session.listeners:
        session.listeners.remove((loop, queue))
    if not session.listeners:
        session.orphaned_since = time.monotonic()
