"""Django settings for Anyon Cloud.

Every value comes from the environment (12-factor); each one is documented in docs/DEPLOYMENT.md, and
tests/anyon/test_docs.py fails when a setting read here is missing from that table. Read new settings through
the ``env`` object below so that the documentation test sees them.
"""

from __future__ import annotations

import re
import sys
from datetime import timedelta
from pathlib import Path

import environ

from anyon.data_dir import ensure_data_dir
from anyon.devkey import resolve_secret_key
from shared.credential_mode import CredentialMode

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

DEBUG = env.bool("DEBUG", default=False)

# --- keys -------------------------------------------------------------------------------------------------
# ANYON_SECRET_KEY is key material of the secret store: django-cryptography derives the encryption key from it
# *and* signs every ciphertext with Django's SECRET_KEY, so both are the same value here and rotating it means
# running `manage.py rotate_secret_key` (see docs/RUNBOOK.md).
SECRET_KEY, SECRET_KEY_SOURCE = resolve_secret_key(
    env.str("ANYON_SECRET_KEY", default=""),
    debug=DEBUG,
    dev_key_file=Path(env.str("ANYON_DEV_KEY_FILE", default=str(Path.home() / ".local/share/anyon/dev-secret-key"))),
    diagnosing=sys.argv[1:2] == ["doctor"],
)
CRYPTOGRAPHY_KEY = SECRET_KEY
#: The services' settings file (systemd's EnvironmentFile=): `rotate_secret_key` runs with it and writes the new key
#: into it; the egress proxy re-reads ANYON_SECRET_KEY from it when a stored value does not decrypt.
ANYON_ENV_FILE = Path(env.str("ANYON_ENV_FILE", default="/etc/anyon/env"))

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_q",
    "axes",
    "anyon",
    "shared",
    "secrets_app",
    "execution",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # A database or Redis connection error becomes a 503 page with a sentence, not a 500 (anyon/middleware.py).
    "anyon.middleware.ServiceOutageMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes requires: turns a refused sign-in into the lockout page (anyon/login_throttle.py).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "anyon.urls"
ASGI_APPLICATION = "anyon.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "anyon.context_processors.system_notices",
            ],
        },
    },
]

# --- database ---------------------------------------------------------------------------------------------
DATA_DIR = Path(env.str("ANYON_DATA_DIR", default=str(BASE_DIR / "var")))
DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'anyon.sqlite3'}"),
}
if "DATABASE_URL" not in env.ENVIRON:
    ensure_data_dir(DATA_DIR)  # the default SQLite file must have a folder to live in: created 0700 (anyon/data_dir.py)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web and worker write at the same time: WAL lets readers run beside the writer, the busy timeout makes a
    # writer wait instead of failing with "database is locked", and IMMEDIATE transactions take the write lock
    # up front so two transactions never deadlock upgrading a read lock. A checkpoint (WAL → database file) costs
    # an fsync of ~50 ms: every 40 MB of writes instead of SQLite's default 4 MB, so a run streaming output does
    # not stall every few megabytes; the WAL file is cut back to 64 MB after a checkpoint.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": (
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=30000; "
            "PRAGMA wal_autocheckpoint=10000; PRAGMA journal_size_limit=67108864;"
        ),
    }
# Keep a process's (or thread's) connection between requests and websocket queries instead of opening one per
# query: a live log viewer asks the database after every wake-up, and a new SQLite connection with the pragmas above
# costs more than the query itself. Health checks drop a connection the database has closed.
if DATABASES["default"]["ENGINE"].endswith("postgresql"):
    # Names the process in pg_stat_activity (and in what `manage.py restore` says holds the database open).
    _program = "daphne" if "daphne" in sys.argv[0] else (sys.argv[1] if len(sys.argv) > 1 else Path(sys.argv[0]).name)
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("application_name", f"anyon {_program}"[:63])
DATABASES["default"]["CONN_MAX_AGE"] = env.int("ANYON_DB_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis (optional scale-out) -----------------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")

#: Client settings of every Redis connection (redis-py). redis-py 8 reads with a 5 s socket timeout by default, and
#: channels_redis blocks on Redis for 5 s (BZPOPMIN) waiting for a consumer's next message: each idle websocket's read
#: then timed out and crashed its consumer. The socket timeout must stay above the longest blocking command (the
#: channel layer's 5 s, django-q2's 1 s BLPOP); keepalive and a health check before reusing an idle connection find a
#: connection Redis dropped, and a read that timed out is retried once on a fresh connection.
REDIS_CLIENT_OPTIONS = {
    "socket_timeout": 30,
    "socket_connect_timeout": 3,
    "socket_keepalive": True,
    "health_check_interval": 15,
    "retry_on_timeout": True,
}

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": REDIS_URL, **REDIS_CLIENT_OPTIONS}]},
        }
    }
    # Pages and health checks read this cache with short timeouts: an outage costs them seconds, not half a minute.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {**REDIS_CLIENT_OPTIONS, "socket_timeout": 5},
        }
    }
else:
    # In-memory groups, plus group messages between this host's processes over UNIX sockets (shared/wakeups/).
    CHANNEL_LAYERS = {"default": {"BACKEND": "shared.wakeups.channel_layer.HostChannelLayer"}}
    # A cache shared by web and worker processes: the worker's heartbeat (django-q2 cluster stats) lives here.
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "anyon_cache"}}

#: Live log viewers look at the database this often when no wake-up arrives. Wake-ups come over the channel layer:
#: through Redis with REDIS_URL, else between the processes of one host (ANYON_WAKEUP_DIR), so the poll is only a
#: safety net (and the delay for a worker on another host sharing PostgreSQL without Redis).
ANYON_LOG_POLL_SECONDS = env.float("ANYON_LOG_POLL_SECONDS", default=2.0 if REDIS_URL else 0.5)

# --- task queue (django-q2) ---------------------------------------------------------------------------------
RUN_TIMEOUT = env.int("ANYON_RUN_TIMEOUT", default=3600)
#: The queue (django-q2 cluster name) of this worker: one per Docker host. Every later step of an attempt (follow-ups,
#: pull requests, deletion, cleanup) runs on a worker of the queue whose engine holds its container and workspace.
ANYON_WORKER_QUEUE = env.str("ANYON_WORKER_QUEUE", default="anyon")
#: The queues new attempts are spread over (least busy first); the web processes need the full list.
ANYON_WORKER_QUEUES = env.list("ANYON_WORKER_QUEUES", default=[ANYON_WORKER_QUEUE])
Q_CLUSTER = {
    "name": "anyon",
    "cluster_name": ANYON_WORKER_QUEUE,
    "workers": env.int("ANYON_WORKERS", default=2),
    # An attempt may run for ANYON_RUN_TIMEOUT; the queue timeout sits above it so the attempt's own timeout
    # handling wins, and retry must exceed timeout or django-q2 runs the task twice.
    "timeout": RUN_TIMEOUT + 300,
    "retry": RUN_TIMEOUT + 600,
    "max_attempts": 1,
    "catch_up": False,
    "save_limit": 500,
    "label": "Task queue",
    "cache": "default",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
    # The Redis broker with the client settings above, that waits out a Redis outage with one log line instead of
    # an error (and the pusher's restart) every half second (shared/wakeups/redis_broker.py).
    Q_CLUSTER["broker_class"] = "shared.wakeups.redis_broker.PatientRedisBroker"
else:
    Q_CLUSTER["orm"] = "default"
    Q_CLUSTER["broker_class"] = "shared.wakeups.queue_broker.WakingORMBroker"  # queueing wakes this host's idle worker
    # How often idle workers ask the database for queued tasks when no wake-up arrives (a task queued on this host
    # wakes them at once; one queued from another host waits for this poll).
    Q_CLUSTER["poll"] = env.float("ANYON_QUEUE_POLL_SECONDS", default=0.5)

# --- auth, sessions -----------------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Sign-in throttling (django-axes): after ANYON_LOGIN_FAILURE_LIMIT failures for one username (from any address) or
# from one address (for any username) within the cool-off, that username or address is refused, even with the right
# password, until ANYON_LOGIN_COOLOFF_MINUTES after its last counted failure or `manage.py axes_reset_username`
# (docs/RUNBOOK.md). Covers /login/ and /admin/login/ (every authenticate() with a request).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("ANYON_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("ANYON_LOGIN_COOLOFF_MINUTES", default=15))
if AXES_FAILURE_LIMIT < 1 or AXES_COOLOFF_TIME.total_seconds() <= 0:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("ANYON_LOGIN_FAILURE_LIMIT must be at least 1 and ANYON_LOGIN_COOLOFF_MINUTES above 0")
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # either one alone locks: per account and per address
# Tries during a lockout are refused without being counted, so the cool-off ends when the page says it does.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_CALLABLE = "anyon.login_throttle.locked_out"
AXES_CLIENT_IP_CALLABLE = "anyon.login_throttle.client_ip"
#: Behind a reverse proxy every request comes from the proxy's address: name the header the proxy sets to the
#: client's address (X-Real-IP, or X-Forwarded-For whose right-most entry is used), or leave empty for the peer.
ANYON_LOGIN_CLIENT_IP_HEADER = env.str("ANYON_LOGIN_CLIENT_IP_HEADER", default="")
#: Open websockets re-check their session (still there, not expired, same active user and password) this often;
#: a log-out or a deactivation in this process family closes them at once (shared/live/sessions.py).
ANYON_LIVE_SESSION_CHECK_SECONDS = env.float("ANYON_LIVE_SESSION_CHECK_SECONDS", default=30.0)
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env.bool("ANYON_SECURE_COOKIES", default=not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
X_FRAME_OPTIONS = "DENY"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"

# --- mail (alerts, notices) ---------------------------------------------------------------------------------
vars().update(env.email_url("EMAIL_URL", default="consolemail://"))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="anyon@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- Anyon ------------------------------------------------------------------------------------------------
ANYON_TEMP_DIR = Path(env.str("ANYON_TEMP_DIR", default="/tmp/anyon"))
#: Without Redis, the web server and the worker wake each other through UNIX sockets in this private directory
#: (shared/wakeups/); empty turns the wake-ups off, leaving only the polls.
ANYON_WAKEUP_DIR = env.str("ANYON_WAKEUP_DIR", default=str(ANYON_TEMP_DIR / "wakeups"))


def _runtime_image_version() -> str:
    """The image semver lives in one place: the IMAGE_VERSION build arg default of runtime-image/Dockerfile."""
    dockerfile = BASE_DIR / "runtime-image" / "Dockerfile"
    try:
        match = re.search(r"^ARG IMAGE_VERSION=(\S+)", dockerfile.read_text(), re.MULTILINE)
    except OSError:
        match = None
    return match.group(1) if match else "0.0.0"


ANYON_RUNTIME_IMAGE_VERSION = _runtime_image_version()
ANYON_CLOUD_IMAGE = env.str("ANYON_CLOUD_IMAGE", default=f"anyon/claude-runtime:{ANYON_RUNTIME_IMAGE_VERSION}")
ANYON_BASE_IMAGE = env.str("ANYON_BASE_IMAGE", default="anyon/debian-base:trixie")
DOCKER_HOST = env.str("DOCKER_HOST", default="")
ANYON_DOCKER_TIMEOUT = env.int("ANYON_DOCKER_TIMEOUT", default=60)

# Containers of attempts
#: Names this installation on a shared Docker engine: cleanup only ever touches containers with its label.
ANYON_INSTANCE = env.str("ANYON_INSTANCE", default="default")
if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", ANYON_INSTANCE):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        f"ANYON_INSTANCE={ANYON_INSTANCE!r} cannot name containers: use 1-63 letters, digits, '_', '.' or '-', "
        "starting with a letter or digit (for example 'default' or 'team-a'). Keep the value once chosen: cleanup "
        "only touches containers and volumes labelled with it."
    )
ANYON_CLOUD_NETWORK = env.str("ANYON_CLOUD_NETWORK", default="bridge")
ANYON_CONTAINER_UID = env.int("ANYON_CONTAINER_UID", default=61000)  # CONTAINER_UID of runtime-image/Dockerfile
ANYON_CONTAINER_GID = env.int("ANYON_CONTAINER_GID", default=61000)
ANYON_CONTAINER_MEMORY = env.str("ANYON_CONTAINER_MEMORY", default="4g")
ANYON_CONTAINER_CPUS = env.float("ANYON_CONTAINER_CPUS", default=2.0)
ANYON_CONTAINER_PIDS = env.int("ANYON_CONTAINER_PIDS", default=1024)
#: anyon: the allowlist of shared/docker/seccomp.py (native ABI only); engine: the Docker engine's default profile.
ANYON_CONTAINER_SECCOMP = env.str("ANYON_CONTAINER_SECCOMP", default="anyon")
if ANYON_CONTAINER_SECCOMP not in ("anyon", "engine"):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(f"ANYON_CONTAINER_SECCOMP must be anyon or engine, not {ANYON_CONTAINER_SECCOMP!r}")
#: Extra, non-secret environment of every attempt container (e.g. HTTPS_PROXY in mounted mode).
ANYON_CONTAINER_ENV = env.dict("ANYON_CONTAINER_ENV", default={})
_secretish = [k for k in ANYON_CONTAINER_ENV if re.search(r"TOKEN|KEY|SECRET|PASSWORD|CREDENTIAL", k, re.I)]
if _secretish:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(
        f"ANYON_CONTAINER_ENV must not carry secrets ({', '.join(_secretish)}): container environment is visible "
        "in docker inspect. Connect credentials in Settings; they are injected through the secret dir."
    )
ANYON_ALERT_WINDOW = env.int("ANYON_ALERT_WINDOW", default=3600)
#: Where doctor, /healthz and the admin dashboard look up the latest Claude Code release (npm registry API).
ANYON_NPM_REGISTRY_URL = env.str("ANYON_NPM_REGISTRY_URL", default="https://registry.npmjs.org")
#: false: none of them asks (air-gapped installs); they show the image's release only.
ANYON_CLAUDE_CODE_VERSION_CHECK = env.bool("ANYON_CLAUDE_CODE_VERSION_CHECK", default=True)

# --- sealed runs (docs/ARCHITECTURE.md, "Egress") ----------------------------------------------------------------
#: sealed: containers have no network; the host's egress proxy adds credentials on the way out and allows only the
#: hosts a run needs. mounted: credentials are readable inside the container (secret files) and egress is open.
ANYON_CREDENTIAL_MODE = env.str("ANYON_CREDENTIAL_MODE", default=CredentialMode.SEALED.value)
if ANYON_CREDENTIAL_MODE not in tuple(CredentialMode):
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(f"ANYON_CREDENTIAL_MODE must be sealed or mounted, not {ANYON_CREDENTIAL_MODE!r}")
#: The egress proxy's control socket (one proxy per Docker host; workers of that host open attempts through it).
ANYON_EGRESS_CONTROL = env.str("ANYON_EGRESS_CONTROL", default=str(ANYON_TEMP_DIR / "egress" / "control.sock"))
#: Extra host[:port] (443 when left out) a sealed run may reach with CONNECT (package registries, ...).
ANYON_EGRESS_ALLOW = env.list("ANYON_EGRESS_ALLOW", default=[])
#: The exact host:port that may resolve to loopback, private or link-local addresses (a GHES on a private network).
ANYON_EGRESS_ALLOW_INTERNAL = env.list("ANYON_EGRESS_ALLOW_INTERNAL", default=[])
#: Hosts ("host", "host:port", "*.domain") no network policy or observe mode may reach (docs/DEPLOYMENT.md).
ANYON_EGRESS_DENY = env.list("ANYON_EGRESS_DENY", default=[])
#: Whether network policies may name hosts beyond the presets and ANYON_EGRESS_ALLOW. Off: presets only.
ANYON_EGRESS_USER_HOSTS = env.bool("ANYON_EGRESS_USER_HOSTS", default=True)
#: Give sealed runs the GitHub REST API of their own task's repository (token added by the proxy). Off: no API at all.
ANYON_AGENT_GITHUB_API = env.bool("ANYON_AGENT_GITHUB_API", default=False)
#: With ANYON_AGENT_GITHUB_API, also let the agent write issues, pull requests and comments (POST/PATCH). Off: reads.
ANYON_AGENT_GITHUB_API_WRITE = env.bool("ANYON_AGENT_GITHUB_API_WRITE", default=False)
#: Let sealed runs' Messages requests make Anthropic fetch URLs, search the web or reach MCP servers. Off: refused.
ANYON_AGENT_API_REMOTE_FETCH = env.bool("ANYON_AGENT_API_REMOTE_FETCH", default=False)
#: The egress proxy's per-attempt limits (docs/DEPLOYMENT.md): connections of all its sockets together, requests a
#: second and their burst, seconds to send a request head, seconds an idle connection is kept, seconds a decrypted
#: credential is reused.
ANYON_EGRESS_MAX_CONNECTIONS = env.int("ANYON_EGRESS_MAX_CONNECTIONS", default=64)
ANYON_EGRESS_REQUESTS_PER_SECOND = env.float("ANYON_EGRESS_REQUESTS_PER_SECOND", default=20.0)
ANYON_EGRESS_REQUEST_BURST = env.int("ANYON_EGRESS_REQUEST_BURST", default=200)
ANYON_EGRESS_HEAD_TIMEOUT = env.float("ANYON_EGRESS_HEAD_TIMEOUT", default=15.0)
ANYON_EGRESS_IDLE_TIMEOUT = env.float("ANYON_EGRESS_IDLE_TIMEOUT", default=120.0)
ANYON_EGRESS_CREDENTIAL_TTL = env.float("ANYON_EGRESS_CREDENTIAL_TTL", default=10.0)
ANYON_ATTEMPT_IDLE_TTL = env.int("ANYON_ATTEMPT_IDLE_TTL", default=7 * 24 * 3600)
ANYON_SECRET_DIR_MAX_AGE = env.int("ANYON_SECRET_DIR_MAX_AGE", default=RUN_TIMEOUT + 900)
ANYON_STALE_ATTEMPT_SECONDS = env.int("ANYON_STALE_ATTEMPT_SECONDS", default=120)
ANYON_CLEANUP_MINUTES = env.int("ANYON_CLEANUP_MINUTES", default=5)
#: How often each worker records that its Docker host (its engine) is alive, and how long without such a record
#: a host counts as lost: new attempts then go to the other hosts, and its running attempts are ended.
ANYON_HOST_HEARTBEAT_SECONDS = env.float("ANYON_HOST_HEARTBEAT_SECONDS", default=5.0)
ANYON_HOST_LOST_SECONDS = env.int("ANYON_HOST_LOST_SECONDS", default=60)
#: A worker process silent this long is gone: any other worker ends its attempts (one that no longer exists on the
#: checker's own machine, at once). Three heartbeats, so that one late write under load is not a death.
ANYON_WORKER_LOST_SECONDS = env.float("ANYON_WORKER_LOST_SECONDS", default=3 * ANYON_HOST_HEARTBEAT_SECONDS)
#: Warm containers this worker's queue (Docker host) keeps started and unclaimed (docs/ARCHITECTURE.md, "Warm pool");
#: 0 provisions each attempt's container when it starts.
ANYON_POOL_SIZE = env.int("ANYON_POOL_SIZE", default=0)
#: Seconds an unclaimed warm container may wait before it is replaced by a fresh one.
ANYON_POOL_MAX_AGE = env.int("ANYON_POOL_MAX_AGE", default=3600)

# --- snapshots of an environment's setup (docs/ARCHITECTURE.md, "Snapshots") ---------------------------------------
#: Keep what a setup prepared and start the owner's next attempt on the repository from it.
ANYON_SNAPSHOTS = env.bool("ANYON_SNAPSHOTS", default=True)
#: A snapshot unused for this many days is removed by the sweep.
ANYON_SNAPSHOT_MAX_AGE_DAYS = env.int("ANYON_SNAPSHOT_MAX_AGE_DAYS", default=14)
#: Bytes of snapshots one user may keep on a Docker host (the least recently used go first); 0: no cap.
ANYON_SNAPSHOT_MAX_BYTES_PER_USER = env.int("ANYON_SNAPSHOT_MAX_BYTES_PER_USER", default=20 * 1024**3)
#: Bytes of all snapshots on a Docker host; 0: no cap.
ANYON_SNAPSHOT_MAX_BYTES = env.int("ANYON_SNAPSHOT_MAX_BYTES", default=100 * 1024**3)

# --- limits (docs/DEPLOYMENT.md, "Limits"): bad input and abuse lose nothing and stop nothing else ----------------
#: Attempts of one user that provision or run at once; the others wait queued, in order, without a worker slot.
ANYON_MAX_ACTIVE_ATTEMPTS_PER_USER = env.int("ANYON_MAX_ACTIVE_ATTEMPTS_PER_USER", default=2)
#: Characters of output stored per attempt (its runs and jobs together); past it the run goes on, the log says
#: where output was cut, and the total is still counted.
ANYON_ATTEMPT_LOG_MAX_CHARS = env.int("ANYON_ATTEMPT_LOG_MAX_CHARS", default=50_000_000)
#: Largest websocket message (and frame) the web server accepts, in bytes; a bigger one closes that socket (1009)
#: before it is buffered.
ANYON_WS_MAX_MESSAGE_BYTES = env.int("ANYON_WS_MAX_MESSAGE_BYTES", default=64 * 1024)
#: Websockets one user may hold open at once in one web process.
ANYON_MAX_WEBSOCKETS_PER_USER = env.int("ANYON_MAX_WEBSOCKETS_PER_USER", default=20)
#: Claude subscription logins one user may start per minute.
ANYON_CLAUDE_LOGIN_STARTS_PER_MINUTE = env.int("ANYON_CLAUDE_LOGIN_STARTS_PER_MINUTE", default=5)
#: A finished attempt's workspace larger than this many bytes is removed by the cleanup sweep (0: no size cap).
ANYON_WORKSPACE_MAX_BYTES = env.int("ANYON_WORKSPACE_MAX_BYTES", default=0)
#: Days a finished attempt keeps its full log; then the hourly retention sweep removes its log records and keeps a
#: summary (line counts, bytes, the last lines of each step). 0: logs are kept forever.
ANYON_LOG_RETENTION_DAYS = env.int("ANYON_LOG_RETENTION_DAYS", default=30)

# GitHub (github.com by default; GitHub Enterprise: https://ghe.example.com and https://ghe.example.com/api/v3)
ANYON_GITHUB_URL = env.str("ANYON_GITHUB_URL", default="https://github.com")
ANYON_GITHUB_API_URL = env.str("ANYON_GITHUB_API_URL", default="https://api.github.com")
ANYON_GITHUB_CLIENT_ID = env.str("ANYON_GITHUB_CLIENT_ID", default="")
ANYON_GITHUB_OAUTH_SCOPES = env.str("ANYON_GITHUB_OAUTH_SCOPES", default="repo read:user")
ANYON_HTTP_TIMEOUT = env.float("ANYON_HTTP_TIMEOUT", default=15.0)

# Claude
ANYON_ANTHROPIC_API_URL = env.str("ANYON_ANTHROPIC_API_URL", default="https://api.anthropic.com")
ANYON_CLAUDE_LOGIN_COMMAND = env.str(
    "ANYON_CLAUDE_LOGIN_COMMAND",
    default=(
        "docker run --rm -i -t --name {name} --label anyon.managed=1 --label anyon.instance={instance} "
        "--network {network} --cap-drop ALL --security-opt no-new-privileges {image} anyon-exec claude setup-token"
    ),
)
ANYON_CLAUDE_LOGIN_NETWORK = env.str("ANYON_CLAUDE_LOGIN_NETWORK", default="bridge")
#: Limits of the login container (a `docker run` login command without its own --memory / --pids-limit gets them).
ANYON_CLAUDE_LOGIN_MEMORY = env.str("ANYON_CLAUDE_LOGIN_MEMORY", default="512m")
ANYON_CLAUDE_LOGIN_PIDS = env.int("ANYON_CLAUDE_LOGIN_PIDS", default=128)
ANYON_CLAUDE_LOGIN_TIMEOUT = env.int("ANYON_CLAUDE_LOGIN_TIMEOUT", default=600)
ANYON_CLAUDE_LOGIN_GRACE = env.int("ANYON_CLAUDE_LOGIN_GRACE", default=30)

ANYON_ADMIN_USERNAME = env.str("ANYON_ADMIN_USERNAME", default="admin")
ANYON_ADMIN_EMAIL = env.str("ANYON_ADMIN_EMAIL", default="admin@localhost")

# --- alerts ---------------------------------------------------------------------------------------------------
ANYON_SLACK_WEBHOOK_URL = env.str("ANYON_SLACK_WEBHOOK_URL", default="")
ANYON_ALERT_EMAILS = env.list("ANYON_ALERT_EMAILS", default=[])
SENTRY_DSN = env.str("SENTRY_DSN", default="")
# Sentry is initialised by AnyonConfig.ready() (anyon/apps.py), not while settings load.

# --- logging ------------------------------------------------------------------------------------------------
LOG_LEVEL = env.str("ANYON_LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    # django-q2's tracebacks of a Redis or database outage (a schedule not queued, a result not saved) become one line
    # per outage (shared/outages.py).
    "filters": {"outages": {"()": "shared.outages.OutageFilter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "django_q": {"handlers": ["console"], "level": "WARNING", "propagate": False},
        "django-q": {"filters": ["outages"]},  # the name django-q2 logs under
    },
}
