"""Running attempts in their containers (docs/ARCHITECTURE.md, "Data flow of one attempt").

entry        the django-q2 tasks: ``execution.runner.run_attempt`` and ``execution.runner.run_job``
session      one session in a container: credentials → secret dir → container → steps → results → cleanup
stream       one step's exec: output read, masked and stored while the run is watched (cancel, timeout)
outcomes     how a finished exec becomes a run status and an error message
workspace    git in the workspace: commits and the diff since the base
history      masking the agent's session history that outlives the container
credentials  the owner's credentials for one session (each decrypt audited)
"""

from execution.runner.entry import run_attempt, run_job, worker_identity

__all__ = ["run_attempt", "run_job", "worker_identity"]
