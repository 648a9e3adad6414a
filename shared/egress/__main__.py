"""``python -m shared.egress --control PATH [--credentials FILE]``: the proxy without Django, for tests and trials.

``--credentials`` names a JSON file ``{"<attempt>": {"anthropic": "...", "github": "..."}}`` that is read at each
request (so it can change while the proxy runs); ``--uses FILE`` appends one JSON line per retired cached credential
(``{"attempt": …, "service": …, "uses": n}``); ``--blocked FILE`` one JSON line per refusal. The ``ANYON_EGRESS_*``
limits and network bounds (``ANYON_EGRESS_ALLOW``, ``ANYON_EGRESS_DENY``, ``ANYON_EGRESS_USER_HOSTS``) come from the
environment. Production runs :func:`shared.egress.serve` from a management command with an audited credential source
instead.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from shared.egress.grant import Service
from shared.egress.limits import Limits
from shared.egress.network_policy import Bounds
from shared.egress.serve import serve


class CredentialFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, attempt_id: str, service: Service) -> str:
        return str(json.loads(self.path.read_text())[attempt_id][service.value])


class UsesFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, attempt_id: str, service: Service, uses: int) -> None:
        with self.path.open("a") as out:
            out.write(json.dumps({"attempt": attempt_id, "service": service.value, "uses": uses}) + "\n")


class BlockedFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(
        self, attempt_id: str, host: str, port: int, reason: str, *, method: str | None = None, path: str | None = None
    ) -> None:
        on_blocked(attempt_id, host, port, reason, method=method, path=path)
        line = {"attempt": attempt_id, "host": host, "port": port, "reason": reason, "method": method, "path": path}
        with self.path.open("a") as out:
            out.write(json.dumps(line) + "\n")


def on_blocked(
    attempt_id: str, host: str, port: int, reason: str, *, method: str | None = None, path: str | None = None
) -> None:
    request = f" ({method} {path})" if method else ""
    logging.getLogger("shared.egress").warning(
        "attempt %s blocked: %s:%s %s%s", attempt_id, host, port, reason, request
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m shared.egress", description=__doc__.splitlines()[0])
    parser.add_argument("--control", required=True, type=Path, help="path of the control UNIX socket")
    parser.add_argument("--credentials", type=Path, help="JSON file of credentials per attempt (tests, trials)")
    parser.add_argument("--uses", type=Path, help="JSON-lines file of the requests each cached credential served")
    parser.add_argument("--blocked", type=Path, help="JSON-lines file of the refusals (tests, trials)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.credentials is None:

        def source(attempt_id: str, service: Service) -> str:
            raise LookupError("this proxy was started without --credentials")

    else:
        source = CredentialFile(args.credentials)
    uses = UsesFile(args.uses) if args.uses else None
    blocked = BlockedFile(args.blocked) if args.blocked else on_blocked
    serve(
        args.control, source, on_blocked=blocked, limits=Limits.from_env(), on_credential_uses=uses,
        bounds=Bounds.from_env(),
    )  # fmt: skip


if __name__ == "__main__":
    main()
