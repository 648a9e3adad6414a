"""Errors of the secret store and of connecting accounts. Messages are shown to users: no secret in them."""


class SecretError(Exception):
    """Base of every failed secret lookup; ``outcome`` is what the access record says."""

    outcome = "missing"


class SecretMissing(SecretError):
    outcome = "missing"


class SecretExpired(SecretError):
    outcome = "expired"


class SecretUndecryptable(SecretError):
    outcome = "undecryptable"


class ConnectError(Exception):
    """Connecting an account failed; the message says what to do."""
