"""Run this host's egress proxy for sealed runs (``serve`` starts it; a worker-only host runs it beside qcluster)."""

from __future__ import annotations

import logging
import signal
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from execution.hosts.egress import bounds, credential_for, limits, record_block, record_credential_uses
from secrets_app.key_canary import alert_if_undecryptable, do_ensure_canary
from secrets_app.key_rotation import reload_secret_key
from shared.egress import serve
from shared.tempdir import ensure_temp_dir

logger = logging.getLogger(__name__)


def check_store_key() -> None:
    """At start: the proxy decrypts credentials, so its key must be the store's (else an alert, at once)."""
    try:
        reload_secret_key()  # a rotation done while it was down: its settings file has the key
        do_ensure_canary()
        problem = alert_if_undecryptable("egress proxy")
    except Exception:
        logger.exception("egress proxy: could not check the secret store's key")
        return
    if problem:
        logger.error("egress proxy: %s", problem)


def on_hangup(signum, frame) -> None:
    """SIGHUP: take ANYON_SECRET_KEY from the settings file again (it does so by itself when a decrypt fails)."""
    changed = reload_secret_key()
    logger.warning("egress proxy: SIGHUP, secret key %s", "reloaded" if changed else "unchanged")


class Command(BaseCommand):
    help = "Run the egress proxy of sealed runs on ANYON_EGRESS_CONTROL until SIGTERM or Ctrl-C."

    def handle(self, *args, **options) -> None:
        ensure_temp_dir(settings.ANYON_TEMP_DIR)
        control = Path(settings.ANYON_EGRESS_CONTROL)
        control.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        logger.info("egress proxy on %s", control)
        self.stdout.write(f"egress proxy: control socket {control}")
        check_store_key()
        signal.signal(signal.SIGHUP, on_hangup)
        serve(
            control, credential_for, on_blocked=record_block, limits=limits(),
            on_credential_uses=record_credential_uses, bounds=bounds(),
        )  # fmt: skip
