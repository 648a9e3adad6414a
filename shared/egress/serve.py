"""Run the egress proxy until SIGTERM/SIGINT: the entry point for a management command or ``python -m``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from typing import TypedDict, Unpack

from shared.egress.address_policy import AddressPolicy
from shared.egress.grant import CredentialSource, CredentialUses, GrantLookup, OnBlocked
from shared.egress.limits import Limits, raise_file_limit
from shared.egress.network_policy import Bounds
from shared.egress.proxy import EgressProxy

logger = logging.getLogger(__name__)


class ProxyOptions(TypedDict, total=False):
    """The keyword arguments of :class:`EgressProxy` besides its credential source, as :func:`run` and :func:`serve`
    pass them on."""

    grant_lookup: GrantLookup | None
    on_blocked: OnBlocked | None
    policy: AddressPolicy | None
    limits: Limits | None
    on_credential_uses: CredentialUses | None
    bounds: Bounds | None


async def run(
    control_path: str | Path,
    credential_source: CredentialSource,
    *,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[EgressProxy], None] | None = None,
    **options: Unpack[ProxyOptions],
) -> None:
    """Serve the control socket until ``stop`` is set (or the task is cancelled); then close every attempt."""
    proxy = EgressProxy(credential_source, **options)
    stop = stop or asyncio.Event()
    await proxy.start_control(control_path)
    if on_ready is not None:
        on_ready(proxy)
    try:
        await stop.wait()
    finally:
        await proxy.stop()


def serve(control_path: str | Path, credential_source: CredentialSource, **options: Unpack[ProxyOptions]) -> None:
    """Blocking: run the proxy in a new event loop until SIGTERM or SIGINT (call it from the main thread).

    The soft open-file limit is raised to the hard one first: the default 1024 is a few dozen busy attempts."""
    files = raise_file_limit()
    options["limits"] = options.get("limits") or Limits()
    logger.info("egress proxy: %s open files; per attempt %s", files, options["limits"])

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, stop.set)
        await run(control_path, credential_source, stop=stop, **options)

    asyncio.run(main())
    logger.info("egress proxy stopped")
