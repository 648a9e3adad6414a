"""Run the egress proxy until SIGTERM/SIGINT: the entry point for a management command or ``python -m``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from pathlib import Path

from shared.egress.address_policy import AddressPolicy
from shared.egress.grant import CredentialSource, CredentialUses, GrantLookup, OnBlocked
from shared.egress.limits import Limits, raise_file_limit
from shared.egress.network_policy import Bounds
from shared.egress.proxy import EgressProxy

logger = logging.getLogger(__name__)


async def run(
    control_path: str | Path,
    credential_source: CredentialSource,
    *,
    grant_lookup: GrantLookup | None = None,
    on_blocked: OnBlocked | None = None,
    policy: AddressPolicy | None = None,
    limits: Limits | None = None,
    on_credential_uses: CredentialUses | None = None,
    bounds: Bounds | None = None,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[EgressProxy], None] | None = None,
) -> None:
    """Serve the control socket until ``stop`` is set (or the task is cancelled); then close every attempt."""
    proxy = EgressProxy(
        credential_source, grant_lookup=grant_lookup, on_blocked=on_blocked, policy=policy, limits=limits,
        on_credential_uses=on_credential_uses, bounds=bounds,
    )  # fmt: skip
    stop = stop or asyncio.Event()
    await proxy.start_control(control_path)
    if on_ready is not None:
        on_ready(proxy)
    try:
        await stop.wait()
    finally:
        await proxy.stop()


def serve(
    control_path: str | Path,
    credential_source: CredentialSource,
    *,
    grant_lookup: GrantLookup | None = None,
    on_blocked: OnBlocked | None = None,
    policy: AddressPolicy | None = None,
    limits: Limits | None = None,
    on_credential_uses: CredentialUses | None = None,
    bounds: Bounds | None = None,
) -> None:
    """Blocking: run the proxy in a new event loop until SIGTERM or SIGINT (call it from the main thread).

    The soft open-file limit is raised to the hard one first: the default 1024 is a few dozen busy attempts."""
    files = raise_file_limit()
    limits = limits or Limits()
    logger.info("egress proxy: %s open files; per attempt %s", files, limits)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, stop.set)
        await run(
            control_path, credential_source, grant_lookup=grant_lookup, on_blocked=on_blocked, policy=policy,
            limits=limits, on_credential_uses=on_credential_uses, bounds=bounds, stop=stop,
        )  # fmt: skip

    asyncio.run(main())
    logger.info("egress proxy stopped")
