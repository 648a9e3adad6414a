"""The Docker label keys Anyon puts on its containers and volumes. The sweeps find this installation's objects by
them (``MANAGED`` + ``INSTANCE``), so every reader and writer names a label through this module."""

MANAGED = "anyon.managed"
INSTANCE = "anyon.instance"
#: The worker queue (Docker host) the object belongs to.
QUEUE = "anyon.queue"
ATTEMPT = "anyon.attempt"
OWNER = "anyon.owner"
#: Seconds since the epoch after which the cleanup sweep removes the container even if its attempt still runs.
EXPIRES = "anyon.expires"
#: Seconds since the epoch when the object was made.
CREATED = "anyon.created"
#: A warm container of the pool (execution/hosts/pool/), or one of its volumes.
POOL = "anyon.pool"
#: A snapshot's image or volume (execution/snapshots.py): the snapshot's key. With ``OWNER`` and ``ENVIRONMENT``.
SNAPSHOT = "anyon.snapshot"
#: The environment (repository) a snapshot prepared.
ENVIRONMENT = "anyon.environment"
