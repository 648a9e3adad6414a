"""The workers' side of the control socket: a small synchronous client (the worker is Django code, not asyncio)."""

from __future__ import annotations

import dataclasses
import json
import socket
from pathlib import Path
from typing import Any

from shared.egress.grant import Grant
from shared.egress.network_policy import NetworkPolicy, NetworkRule


class EgressError(Exception):
    """The proxy is not reachable, or it refused the command (the message says why)."""


class EgressClient:
    """One connection per command: the proxy may restart between commands."""

    def __init__(self, control_path: str | Path, timeout: float = 10.0) -> None:
        self.control_path = str(control_path)
        self.timeout = timeout

    def command(self, payload: dict[str, Any]) -> dict[str, Any]:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                sock.connect(self.control_path)
                sock.sendall(json.dumps(payload).encode() + b"\n")
                with sock.makefile("rb") as answers:
                    line = answers.readline()
        except OSError as exc:
            raise EgressError(f"egress proxy at {self.control_path} is not reachable: {exc}") from exc
        if not line:
            raise EgressError("egress proxy closed the control connection without an answer")
        answer = json.loads(line)
        if not answer.get("ok"):
            raise EgressError(answer.get("error") or "egress proxy refused the command")
        return answer

    def open(
        self, grant: Grant | str, directory: str | Path, uid: int | None = None, gid: int | None = None
    ) -> dict[str, str]:
        """Open an attempt's sockets in ``directory``; a bare attempt id lets the proxy look its grant up."""
        payload: dict[str, Any] = {"op": "open", "dir": str(directory), "uid": uid, "gid": gid}
        if isinstance(grant, Grant):
            payload.update(attempt=grant.attempt_id, grant=grant.to_json())
        else:
            payload["attempt"] = str(grant)
        return self.command(payload)["sockets"]

    def close(self, attempt_id: str | int) -> int:
        """Close the attempt's sockets and drop its connections; returns how many connections were dropped."""
        return int(self.command({"op": "close", "attempt": str(attempt_id)})["dropped"])

    def set_policy(self, attempt_id: str | int, policy: NetworkPolicy) -> NetworkPolicy:
        """Replace the attempt's network policy (its next request uses it); EgressError when the operator's bounds
        forbid a rule of it."""
        payload = {"op": "policy", "attempt": str(attempt_id), "policy": policy.to_json()}
        return NetworkPolicy.from_json(self.command(payload)["policy"])

    def allow(self, attempt_id: str | int, rule: NetworkRule) -> NetworkPolicy:
        """Add one rule for the rest of the attempt; returns the policy now in force (EgressError: refused, why)."""
        payload = {"op": "allow", "attempt": str(attempt_id), "rule": dataclasses.asdict(rule)}
        return NetworkPolicy.from_json(self.command(payload)["policy"])

    def record(self, attempt_id: str | int, *, reset: bool = False) -> dict[str, Any]:
        """The attempt's network record (``shared/egress/network_record.py``), JSON; ``reset`` starts a new one."""
        return self.command({"op": "record", "attempt": str(attempt_id), "reset": reset})["record"]

    def status(self) -> dict[str, Any]:
        return self.command({"op": "status"})

    def ping(self) -> bool:
        try:
            return bool(self.command({"op": "ping"})["ok"])
        except EgressError:
            return False
