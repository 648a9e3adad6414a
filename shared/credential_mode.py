"""Where a run's credentials live: the values of ``ANYON_CREDENTIAL_MODE`` (docs/DEPLOYMENT.md). Code compares the
setting with these members, never with a string of its own."""

from __future__ import annotations

from enum import StrEnum


class CredentialMode(StrEnum):
    #: Containers have no network; the host's egress proxy adds credentials on the way out and allows only the hosts
    #: a run needs.
    SEALED = "sealed"
    #: Credentials are readable inside the container (secret files) and egress is open.
    MOUNTED = "mounted"
