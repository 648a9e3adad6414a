"""Running attempts in their containers; its parts: docs/ARCHITECTURE.md, "Data flow of one attempt"."""

from execution.runner.entry import run_attempt, run_job, worker_identity

__all__ = ["run_attempt", "run_job", "worker_identity"]
