"""Run this host's egress proxy for sealed runs (``serve`` starts it; a worker-only host runs it beside qcluster)."""

from __future__ import annotations

import logging
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from execution.egress import credential_for, limits, record_block, record_credential_uses
from shared.egress import serve
from shared.tempdir import ensure_temp_dir


class Command(BaseCommand):
    help = "Run the egress proxy of sealed runs on ANYON_EGRESS_CONTROL until SIGTERM or Ctrl-C."

    def handle(self, *args, **options) -> None:
        ensure_temp_dir(settings.ANYON_TEMP_DIR)
        control = Path(settings.ANYON_EGRESS_CONTROL)
        control.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        logging.getLogger(__name__).info("egress proxy on %s", control)
        self.stdout.write(f"egress proxy: control socket {control}")
        serve(
            control, credential_for, on_blocked=record_block, limits=limits(), on_credential_uses=record_credential_uses
        )
