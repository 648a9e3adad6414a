# Long because Django keeps an app's models in one module: tasks, attempts, runs, jobs, logs, hosts, the pool.
"""Tasks, attempts, runs and their log records. No I/O here: state changes go through ``execution.attempts.actions``."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from execution.prompts import PromptField


class Task(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="tasks")
    title = models.CharField(max_length=200)
    repo_url = models.CharField("repository URL", max_length=300)
    base_branch = models.CharField(max_length=100, default="main")
    prompt = PromptField(max_length=1_000_000)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.title


class AttemptStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    PROVISIONING = "provisioning", "Provisioning"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    TIMED_OUT = "timed_out", "Timed out"


ACTIVE_STATUSES = (AttemptStatus.QUEUED, AttemptStatus.PROVISIONING, AttemptStatus.RUNNING)
FINAL_STATUSES = (AttemptStatus.SUCCEEDED, AttemptStatus.FAILED, AttemptStatus.CANCELLED, AttemptStatus.TIMED_OUT)

#: Statuses only move forward: each status lists where it may go next.
ATTEMPT_TRANSITIONS: dict[str, tuple[str, ...]] = {
    AttemptStatus.QUEUED: (AttemptStatus.PROVISIONING, AttemptStatus.CANCELLED, AttemptStatus.FAILED),
    AttemptStatus.PROVISIONING: (AttemptStatus.RUNNING, *FINAL_STATUSES),
    AttemptStatus.RUNNING: FINAL_STATUSES,
}


class Attempt(models.Model):
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="attempts")
    status = models.CharField(max_length=16, choices=AttemptStatus.choices, default=AttemptStatus.QUEUED)
    container_id = models.CharField(max_length=80, blank=True)
    workspace_volume = models.CharField(max_length=100, blank=True, help_text="Docker volume holding /workspace")
    secret_dir = models.CharField(
        max_length=64, blank=True, help_text="its directory under cloud-secrets when not named after it (a warm one)"
    )
    branch = models.CharField(max_length=120, blank=True)
    error = models.TextField(blank=True)
    plan = models.JSONField(default=list, help_text="The steps (kind, title, argv) this attempt runs.")
    cancel_requested = models.BooleanField(default=False)
    waiting_for_slot = models.BooleanField(
        default=False, help_text="queued behind the owner's other attempts (ANYON_MAX_ACTIVE_ATTEMPTS_PER_USER)"
    )
    queue = models.CharField(max_length=64, blank=True, help_text="worker queue (Docker host) that owns it")
    worker = models.CharField(max_length=120, blank=True, help_text="the worker process running it (WorkerProcess)")
    base_commit = models.CharField(max_length=64, blank=True, help_text="the base branch's commit it started from")
    head_commit = models.CharField(max_length=64, blank=True)
    diff = models.JSONField(default=list, blank=True, help_text="files changed since base_commit (see diffs.py)")
    diff_truncated = models.BooleanField(default=False)
    push_summary = models.JSONField(
        default=dict, blank=True, help_text="what a push sends: the branch, the commits since base_commit (commit_list)"
    )
    pr_number = models.PositiveIntegerField(null=True, blank=True)
    pr_url = models.URLField(blank=True)
    pr_state = models.CharField(max_length=32, blank=True)
    last_activity_at = models.DateTimeField(null=True, blank=True, help_text="for the workspace idle TTL")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    log_chars = models.BigIntegerField(default=0, help_text="characters of output in all, stored or not")
    log_cut_at_seq = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="the log record after which output was no longer stored (ANYON_ATTEMPT_LOG_MAX_CHARS)",
    )
    log_removed_at = models.DateTimeField(
        null=True, blank=True, help_text="when the full log was removed (ANYON_LOG_RETENTION_DAYS); a summary stays"
    )
    log_summary = models.JSONField(
        default=dict, blank=True, help_text="what the removed log held: line counts, bytes, the last lines of each step"
    )
    network_record = models.JSONField(
        default=dict,
        blank=True,
        help_text="sealed runs: per host what went through the egress proxy, and its refusals",
    )
    setup_seconds = models.FloatField(null=True, blank=True, help_text="how long its setup step ran")
    snapshot_saved = models.BooleanField(default=False, help_text="its state after setup was kept as a snapshot")
    from_snapshot_of = models.DateTimeField(
        null=True, blank=True, help_text="it started from the snapshot made then (its setup did not run)"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status"])]

    def __str__(self) -> str:
        return f"attempt {self.pk} (task {self.task_id}, {self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def duration(self):
        if self.started_at and self.finished_at:
            return self.finished_at - self.started_at
        return None


class JobKind(models.TextChoices):
    FOLLOW_UP = "follow_up", "Follow-up"
    PULL_REQUEST = "pull_request", "Pull request"


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class AttemptJob(models.Model):
    """Work on a finished attempt's workspace: a follow-up prompt, or pushing the branch and opening a PR."""

    attempt = models.ForeignKey(Attempt, on_delete=models.CASCADE, related_name="jobs")
    kind = models.CharField(max_length=16, choices=JobKind.choices)
    prompt = PromptField(blank=True, max_length=1_000_000)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    cancel_requested = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="who asked for it (the credential accesses of its run name them)",
    )  # fmt: skip
    worker = models.CharField(max_length=120, blank=True, help_text="the worker process running it (WorkerProcess)")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.kind} of attempt {self.attempt_id} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in (JobStatus.QUEUED, JobStatus.RUNNING)


class RunKind(models.TextChoices):
    CLONE = "clone", "Clone"
    SETUP = "setup", "Setup"
    AGENT = "agent", "Agent"
    CUSTOM = "custom", "Custom"
    #: The environment's maintenance script: on a start from a snapshot, before the agent.
    MAINTENANCE = "maintenance", "Maintenance"


class RunStatus(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"
    TIMED_OUT = "timed_out", "Timed out"


class Run(models.Model):
    """One ``docker exec`` within an attempt."""

    attempt = models.ForeignKey(Attempt, on_delete=models.CASCADE, related_name="runs")
    job = models.ForeignKey(AttemptJob, null=True, blank=True, on_delete=models.CASCADE, related_name="runs")
    kind = models.CharField(max_length=16, choices=RunKind.choices)
    title = models.CharField(max_length=200, blank=True)
    argv = models.JSONField(default=list)
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.RUNNING)
    exit_code = models.IntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    session_id = models.CharField(max_length=80, blank=True, help_text="Claude session of an agent run")
    commit_before = models.CharField(max_length=64, blank=True)
    commit_after = models.CharField(max_length=64, blank=True)
    own_commit = models.CharField(
        max_length=64, blank=True, help_text="the commit Anyon's commit step made after this agent run (if any)"
    )
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.kind} run {self.pk} ({self.status})"

    @property
    def duration(self):
        if self.finished_at:
            return self.finished_at - self.started_at
        return None


class LogStream(models.TextChoices):
    STDOUT = "stdout", "stdout"
    STDERR = "stderr", "stderr"
    AGENT = "agent", "agent"  # readable rendering of the Claude CLI's stream-json events
    SYSTEM = "system", "system"  # what Anyon itself says about the attempt


class LogRecord(models.Model):
    """A masked piece of output. ``seq`` orders all records of one attempt, across its runs, without gaps."""

    attempt = models.ForeignKey(Attempt, on_delete=models.CASCADE, related_name="log_records")
    run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.CASCADE, related_name="log_records")
    seq = models.PositiveIntegerField()
    stream = models.CharField(max_length=8, choices=LogStream.choices)
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["attempt", "seq"]
        constraints = [models.UniqueConstraint(fields=["attempt", "seq"], name="one_record_per_attempt_seq")]

    def __str__(self) -> str:
        return f"{self.attempt_id}#{self.seq} {self.stream}"


class ToolOutput(models.Model):
    """The whole output of one tool call of an agent run, masked, of which the log shows the first part (the log
    line ends with ``[full output #<run>.<number>]``). Kept up to ``logs.writer.TOOL_OUTPUT_MAX_CHARS`` each."""

    attempt = models.ForeignKey(Attempt, on_delete=models.CASCADE, related_name="tool_outputs")
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="tool_outputs")
    number = models.PositiveIntegerField(help_text="the tool call's place among the run's long outputs")
    text = models.TextField()
    chars = models.PositiveIntegerField(help_text="its length before the cap")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "number"], name="one_tool_output_per_run_number")]

    def __str__(self) -> str:
        return f"output {self.run_id}.{self.number}"


class EgressBlock(models.Model):
    """A connection the egress proxy refused for a sealed run (``blocked: host:port is not on the allowlist``).

    Written by the proxy process; the worker running the attempt copies each into the attempt's log once
    (``logged``), since only it numbers the attempt's log records."""

    attempt = models.ForeignKey(Attempt, on_delete=models.CASCADE, related_name="egress_blocks")
    host = models.CharField(max_length=255)
    port = models.PositiveIntegerField()
    #: Where the proxy saw them (plain HTTP); empty for a ``CONNECT`` tunnel, whose request TLS hides.
    method = models.CharField(max_length=16, blank=True)
    path = models.CharField(max_length=200, blank=True)
    reason = models.CharField(max_length=200)
    #: Refusals of this host, port and reason: a repeat counts here instead of adding a row (and a log line), so an
    #: agent in a loop cannot fill the database (see ``execution.hosts.egress.MAX_BLOCK_ROWS``).
    count = models.PositiveIntegerField(default=1)
    logged = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        if self.port == 0:  # the overflow row (no real connection goes to port 0)
            return f"blocked: {self.reason}"
        request = f" ({self.method} {self.path or '/'})" if self.method else ""
        return f"blocked: {self.host}:{self.port} {self.reason}{request}"


class AllowanceState(models.TextChoices):
    PENDING = "pending", "waiting for the worker"
    APPLIED = "applied", "allowed"
    REFUSED = "refused", "refused"


class NetworkAllowance(models.Model):
    """ "Allow for this attempt": a host:port its owner let a running sealed attempt reach (the audit of who allowed
    what). The web writes it ``pending``; the worker running the attempt adds the rule on its host's egress proxy
    and marks it ``applied``, or ``refused`` with the proxy's reason (execution/hosts/network.py)."""

    attempt = models.ForeignKey(Attempt, on_delete=models.CASCADE, related_name="network_allowances")
    host = models.CharField(max_length=255)
    port = models.PositiveIntegerField()
    allowed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    state = models.CharField(max_length=8, choices=AllowanceState.choices, default=AllowanceState.PENDING)
    detail = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.host}:{self.port} ({self.state})"


class HostState(models.TextChoices):
    HEALTHY = "healthy", "healthy"
    DRAINING = "draining", "draining"
    ENGINE_DOWN = "engine_down", "engine down"
    LOST = "lost", "worker lost"
    #: A queue of ``ANYON_WORKER_QUEUES`` no worker has reported yet (a fresh installation): placement may use it.
    UNKNOWN = "unknown", "unknown"


class DockerHost(models.Model):
    """A worker queue and the Docker engine next to it, as its worker last reported them (every
    ``ANYON_HOST_HEARTBEAT_SECONDS``). The web places new attempts only on healthy hosts."""

    name = models.CharField(max_length=64, unique=True, help_text="the worker queue (ANYON_WORKER_QUEUE)")
    docker_host = models.CharField(max_length=300, blank=True, help_text="the worker's DOCKER_HOST (empty: local)")
    worker = models.CharField(max_length=120, blank=True, help_text="host:pid of the worker that reported last")
    engine_ok = models.BooleanField(default=True, help_text="its engine answered the last ping")
    engine_error = models.CharField(max_length=500, blank=True)
    engine_version = models.CharField(max_length=40, blank=True)
    draining = models.BooleanField(default=False, help_text="takes no new attempts; running ones finish")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    engine_seen_at = models.DateTimeField(null=True, blank=True, help_text="last time its engine answered")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def state(self, now, lost_after) -> str:
        """Lost (no heartbeat within ``lost_after``) > engine down > draining > healthy."""
        if self.heartbeat_at is None or now - self.heartbeat_at > lost_after:
            return HostState.LOST
        if not self.engine_ok:
            return HostState.ENGINE_DOWN
        return HostState.DRAINING if self.draining else HostState.HEALTHY


class PoolContainer(models.Model):
    """A warm container waiting for an attempt (docs/ARCHITECTURE.md, "Warm pool"): started, hardened, with its own
    fresh workspace and home volumes and its own empty secret dir, none of them any user's yet. Claiming deletes the
    row and records the names on the attempt in the same transaction, so a container serves one attempt at most."""

    queue = models.CharField(max_length=64, help_text="worker queue (Docker host) it runs on")
    container_id = models.CharField(max_length=80, unique=True)
    name = models.CharField(max_length=120)
    workspace_volume = models.CharField(max_length=100)
    secret_dir = models.CharField(max_length=64, help_text="its directory under cloud-secrets")
    fingerprint = models.CharField(max_length=64, help_text="image id and container settings it was made with")
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["queue", "fingerprint", "created_at"])]

    def __str__(self) -> str:
        return f"warm container {self.name} ({self.queue})"


class WorkerProcess(models.Model):
    """One worker process (of ``qcluster``) as it last reported itself, every ``ANYON_HOST_HEARTBEAT_SECONDS``.
    An attempt or job names the process that runs it (``worker``); when that process stops beating (killed, its
    machine gone) or, on its own machine, no longer exists, any other worker ends its work
    (``execution.hosts.workers``)."""

    name = models.CharField(max_length=120, unique=True, help_text="host:pid:nonce, as attempts name it")
    queue = models.CharField(max_length=64, help_text="its worker queue (Docker host)")
    machine = models.CharField(max_length=120, help_text="boot id and pid namespace: where its pid means something")
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    heartbeat_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class NetworkMode(models.TextChoices):
    """What a phase of a run may reach beyond Anyon's own services (shared/egress/network_policy.py)."""

    OFF = "off", "Off: the operator's allowlist only"
    RULES = "rules", "Presets and custom entries"
    OBSERVE = "observe", "Observe: reach what the operator allows and record it (setup only)"


class Environment(models.Model):
    """How a user's runs of one repository are prepared: a setup script run after the clone and before the agent,
    plain variables for every step, and what each phase may reach. Setup secrets are :class:`EnvironmentSecret`."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="environments")
    repository = models.CharField(max_length=200, help_text="owner/name on the GitHub host, lower-cased")
    setup_script = models.TextField(blank=True)
    maintenance_script = models.TextField(blank=True, help_text="for starts from a cached setup")
    variables = models.JSONField(default=dict, blank=True, help_text="name → value, shown and given to every step")
    setup_network_mode = models.CharField(max_length=8, choices=NetworkMode.choices, default=NetworkMode.OFF)
    setup_network_presets = models.JSONField(default=list, blank=True)
    setup_network_rules = models.TextField(blank=True)
    setup_network_read_only = models.BooleanField(default=False)
    agent_network_mode = models.CharField(max_length=8, choices=NetworkMode.choices, default=NetworkMode.OFF)
    agent_network_presets = models.JSONField(default=list, blank=True)
    agent_network_rules = models.TextField(blank=True)
    agent_network_read_only = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["repository"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "repository"], name="one_environment_per_owner_repository")
        ]

    def __str__(self) -> str:
        return f"environment {self.repository} of user {self.owner_id}"

    @property
    def owner_and_name(self) -> list[str]:
        return self.repository.split("/", 1)


class EnvironmentSecret(models.Model):
    """A setup secret's name; its value is a ``secrets_app`` secret (encrypted, every decrypt audited). Given to the
    setup script only, never to the agent."""

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="secrets")
    name = models.CharField(max_length=100)
    secret = models.OneToOneField("secrets_app.Secret", on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["environment", "name"], name="one_setup_secret_per_name")]

    def __str__(self) -> str:
        return f"setup secret {self.name} of environment {self.environment_id}"


class Snapshot(models.Model):
    """What an environment's setup prepared, kept to start the owner's next attempt on the repository from it
    (docs/ARCHITECTURE.md, "Snapshots"): an image committed from the attempt's stopped container with copies of its
    workspace and home in it, on one Docker host. One user's only: never looked up for another user."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="snapshots")
    #: A deleted environment takes its rows along; the sweep then removes their images (no row names them).
    environment = models.ForeignKey("Environment", on_delete=models.CASCADE, related_name="snapshots")
    repo_url = models.CharField("repository URL", max_length=300, help_text="the task's repository URL")
    queue = models.CharField(max_length=64, help_text="worker queue (Docker host) holding its image and volumes")
    key = models.CharField(max_length=64, help_text="repository, setup script, runtime image, mode and lockfiles")
    setup_hash = models.CharField(max_length=64)
    runtime_image_id = models.CharField(max_length=100)
    lockfiles = models.JSONField(default=list, blank=True, help_text="[path, blob id] at the base commit")
    base_commit = models.CharField(max_length=64, blank=True)
    image = models.CharField(max_length=200, help_text="the committed image (name:tag)")
    image_id = models.CharField(max_length=100, blank=True)
    size_bytes = models.BigIntegerField(
        default=0, help_text="the image's own layers: the setup's files, workspace, home"
    )
    attempt_id = models.PositiveIntegerField(null=True, blank=True, help_text="the attempt whose setup made it")
    created_at = models.DateTimeField()
    last_used_at = models.DateTimeField()
    hits = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["owner", "queue", "repo_url", "setup_hash"])]

    def __str__(self) -> str:
        return f"snapshot of {self.repo_url} ({self.created_at:%Y-%m-%d %H:%M})"
