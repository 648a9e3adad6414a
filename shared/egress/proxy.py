"""The egress proxy of one Docker host: the open attempts, and the control socket the workers drive it through.

Control protocol: one JSON object per line on the control UNIX socket (mode 0600: workers run as root or as the
proxy's user; containers never see it), one JSON answer line per request::

    {"op": "open", "attempt": "42", "dir": "/…/cloud-secrets/42", "uid": 1000, "gid": 1000, "grant": {…}}
        -> {"ok": true, "sockets": {"api.sock": "/…/42/api.sock", "git.sock": …, "proxy.sock": …}}
    {"op": "open", "attempt": "42", "dir": …}          (no grant: the proxy's grant_lookup supplies it)
    {"op": "close", "attempt": "42"}                   -> {"ok": true, "dropped": 2, "record": {…}}  (idempotent;
                                                           record: the attempt's last network record, or null)
    {"op": "policy", "attempt": "42", "policy": {…}}  -> {"ok": true, "policy": {…}, "cut": 1}  (replaces it)
    {"op": "allow", "attempt": "42", "rule": {…}}      -> {"ok": true, "policy": {…}}  (one more rule, this attempt)
    {"op": "record", "attempt": "42", "reset": false}  -> {"ok": true, "record": {"hosts": […], "blocked": […],
                                                           "policy": {…}, "proposal": {"policy": {…}, "text": …}}}
    {"op": "status"}                                   -> {"ok": true, "attempts": [{…}], …}
    {"op": "ping"}                                     -> {"ok": true}
    any failure                                        -> {"ok": false, "error": "…"}

``policy`` and ``allow`` are checked against the operator's :class:`~shared.egress.network_policy.Bounds` (a rule
they forbid is refused with the reason); the attempt's next request is decided by the new policy, and ``policy``
cuts the open tunnels and requests it no longer allows (``cut``). ``record`` returns
the attempt's network record (``shared/egress/network_record.py``) and, in observe mode, the smallest policy that
covers what was used; ``reset`` starts a new record (the next phase). Opening an attempt that is already open
replaces it (its old sockets and connections go first). The attempts'
connections share a budget below the process's open-file limit that leaves room for the control socket, so a
flooding attempt never keeps the workers' ``ping`` from an answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from shared.egress.address_policy import AddressPolicy
from shared.egress.attempt_sockets import AttemptSockets
from shared.egress.grant import CredentialSource, CredentialUses, Grant, GrantLookup, OnBlocked
from shared.egress.limits import MAX_CONTROL_CONNECTIONS, Budget, Limits
from shared.egress.network_policy import Bounds, NetworkPolicy, NetworkRule, propose_policy
from shared.egress.network_record import NetworkRecord

logger = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
MAX_LINE = 1024 * 1024


class EgressProxy:
    """Opens and closes attempts; :meth:`start_control` serves the control socket. Runs in one event loop."""

    def __init__(
        self,
        credential_source: CredentialSource,
        *,
        grant_lookup: GrantLookup | None = None,
        on_blocked: OnBlocked | None = None,
        policy: AddressPolicy | None = None,
        limits: Limits | None = None,
        on_credential_uses: CredentialUses | None = None,
        bounds: Bounds | None = None,
    ) -> None:
        self.credential_source = credential_source
        self.bounds = bounds or Bounds()
        self.limits = limits or Limits()
        self.budget = Budget()
        self.on_credential_uses = on_credential_uses
        self._control_connections = 0
        self.grant_lookup = grant_lookup
        self.on_blocked = on_blocked
        self.policy = policy or AddressPolicy()
        self.attempts: dict[str, AttemptSockets] = {}
        self.started = time.time()
        self._control: asyncio.Server | None = None
        self._control_path: Path | None = None
        self._lock = asyncio.Lock()

    async def open_attempt(
        self, grant: Grant, directory: str | Path, uid: int | None = None, gid: int | None = None
    ) -> dict[str, Path]:
        """Create the attempt's sockets in ``directory`` (owned by ``uid``/``gid`` when given)."""
        async with self._lock:
            old = self.attempts.pop(grant.attempt_id, None)
            if old is not None:
                await old.close()
            attempt = AttemptSockets(
                grant, Path(directory), credential_source=self.credential_source, on_blocked=self.on_blocked,
                policy=self.policy, limits=self.limits, budget=self.budget,
                on_credential_uses=self.on_credential_uses, bounds=self.bounds,
            )  # fmt: skip
            paths = await attempt.open(uid, gid)
            self.attempts[grant.attempt_id] = attempt
        logger.info("egress attempt %s opened: %s", grant.attempt_id, ", ".join(sorted(paths)))
        return paths

    async def close_attempt(self, attempt_id: str) -> int:
        """Close the attempt's sockets and drop its connections; 0 when it was not open."""
        async with self._lock:
            attempt = self.attempts.pop(str(attempt_id), None)
            dropped = await attempt.close() if attempt is not None else 0
        if attempt is not None:
            logger.info("egress attempt %s closed (%s connections dropped)", attempt_id, dropped)
        return dropped

    def record(self, attempt_id: str, *, reset: bool = False) -> dict[str, Any]:
        """The attempt's network record as JSON (and a proposal in observe mode); ``reset`` starts a new one."""
        attempt = self.attempts[attempt_id]
        record, network = attempt.record, attempt.network
        if reset:
            attempt.record = NetworkRecord()
        data = {**record.to_json(), "policy": network.to_json(), "proposal": None}
        if network.mode == "observe":
            policy, text = propose_policy(record.used(), attempt.bounds)
            data["proposal"] = {"policy": policy.to_json(), "text": text}
        return data

    def status(self) -> dict[str, Any]:
        return {
            "version": PROTOCOL_VERSION,
            "pid": os.getpid(),
            "uptime": round(time.time() - self.started, 1),
            "attempts": [a.status() for a in self.attempts.values()],
            "connections": self.budget.connections,
            "capacity": self.budget.capacity,
            "file_limit": self.budget.limit,
        }

    # -- control socket -----------------------------------------------------------------------------------
    async def start_control(self, path: str | Path) -> None:
        path = Path(path)
        if path.is_socket():
            path.unlink()  # a stale socket of an earlier run
        old_umask = os.umask(0o177)  # 0600 from the start, not after a window
        try:
            self._control = await asyncio.start_unix_server(self._serve_control, str(path), limit=MAX_LINE)
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)
        self._control_path = path
        logger.info("egress proxy listening for control on %s", path)

    async def stop(self) -> None:
        """Stop the control socket and close every attempt."""
        if self._control is not None:
            self._control.close()
            self._control = None
        if self._control_path is not None:
            self._control_path.unlink(missing_ok=True)
        for attempt_id in list(self.attempts):
            await self.close_attempt(attempt_id)

    async def _serve_control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._control_connections >= MAX_CONTROL_CONNECTIONS:  # the reserve of descriptors is for a few of them
            writer.transport.abort()
            return
        self._control_connections += 1
        try:
            while line := await reader.readline():
                answer = await self.handle_command(line)
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, ValueError) as exc:  # ValueError: a line over MAX_LINE
            logger.debug("egress control connection ended: %s", exc)
        finally:
            self._control_connections -= 1
            writer.close()

    async def handle_command(self, line: bytes) -> dict[str, Any]:
        """Run one control command; never raises (errors become ``{"ok": false, "error": ...}``)."""
        try:
            command = json.loads(line)
            if not isinstance(command, dict):
                raise ValueError("a command is a JSON object")
            op = command.get("op")
            if op == "ping":
                return {"ok": True}
            if op == "status":
                return {"ok": True, **self.status()}
            attempt_id = str(command.get("attempt") or "")
            if not attempt_id:
                raise ValueError("attempt is required")
            if op == "close":
                record = self.record(attempt_id) if attempt_id in self.attempts else None
                return {"ok": True, "dropped": await self.close_attempt(attempt_id), "record": record}
            if op == "open":
                return {"ok": True, "sockets": await self._open_command(attempt_id, command)}
            if op in ("policy", "allow", "record"):
                attempt = self.attempts.get(attempt_id)
                if attempt is None:
                    raise LookupError(f"attempt {attempt_id} is not open")
                if op == "policy":
                    cut = attempt.set_network(NetworkPolicy.from_json(command.get("policy") or {}))
                    return {"ok": True, "policy": attempt.network.to_json(), "cut": cut}
                if op == "allow":
                    return {
                        "ok": True,
                        "policy": attempt.allow_rule(NetworkRule.from_json(command.get("rule") or {})).to_json(),
                    }
                return {"ok": True, "record": self.record(attempt_id, reset=bool(command.get("reset")))}
            raise ValueError(f"unknown op {op!r}")
        except Exception as exc:
            logger.warning("egress control command failed: %s", exc)
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}

    async def _open_command(self, attempt_id: str, command: dict[str, Any]) -> dict[str, str]:
        if "grant" in command:
            grant = Grant.from_json(command["grant"])
        elif self.grant_lookup is not None:
            grant = await asyncio.to_thread(self.grant_lookup, attempt_id)
        else:
            raise ValueError("no grant given and this proxy has no grant lookup")
        if grant.attempt_id != attempt_id:
            raise ValueError(f"the grant is for attempt {grant.attempt_id}, not {attempt_id}")
        directory = command.get("dir")
        if not directory:
            raise ValueError("dir is required")
        paths = await self.open_attempt(grant, directory, command.get("uid"), command.get("gid"))
        return {name: str(path) for name, path in paths.items()}
