#!/usr/bin/env bash
# Installs Anyon Cloud on this host, or upgrades it: `sudo deploy/install.sh` from a checkout (docs/DEPLOYMENT.md).
#
# Idempotent: every item is brought to its state and reported as created, changed or unchanged; a second run with
# nothing changed changes nothing. Re-run after pulling a new version: it copies the code, installs changed
# dependencies, migrates (with the services stopped), rebuilds the runtime image and restarts what changed.
set -euo pipefail
umask 022

usage() {
  cat <<'EOF'
Usage: sudo deploy/install.sh [options]

  --instance NAME        ANYON_INSTANCE (default: default). Another name installs a second, separate installation
                         on this host: its own user, settings, database, Redis database, port, units and site.
  --server-name HOST     Public host name (nginx server_name, ALLOWED_HOSTS, CSRF_TRUSTED_ORIGINS);
                         default: hostname -f.
  --port N               Port of the web server on 127.0.0.1 (default 8000; another instance needs another).
  --tls-cert FILE        TLS certificate (full chain) and its key for nginx. Without them a self-signed
  --tls-key FILE         certificate is made for a trial (browsers warn).
  --database-url URL     Use this PostgreSQL database instead of installing one on this host.
  --redis-url URL        Use this Redis instead of installing one on this host.
  --postgres-port N      Port of the local PostgreSQL server (default 5432).
  --postgres-socket-dir D  Its socket folder (default /var/run/postgresql).
  --redis-port N         Port of the local Redis server (default 6379).
  --redis-config FILE    Its config file, where the install sets its password (default /etc/redis/redis.conf).
  --embedded             SQLite and no Redis (one machine; no PostgreSQL or Redis installed).
  --no-nginx             Write no nginx site (another reverse proxy is in front).
  --skip-packages        Install no Debian packages (they are there already).
  --skip-image           Do not build the runtime image (it is built or pulled otherwise).
  --python PATH          Interpreter of the virtualenv (default /usr/bin/python3; 3.11 to 3.13).
  --root DIR             Write every file below DIR instead of / (tests).
EOF
}

INSTANCE=default ROOT="" SERVER_NAME="" PORT="" TLS_CERT="" TLS_KEY="" DATABASE_URL_GIVEN="" REDIS_URL_GIVEN=""
PG_PORT=5432 PG_SOCKET=/var/run/postgresql REDIS_PORT=6379 REDIS_CONF="" EMBEDDED="" NGINX=1 PACKAGES=1 IMAGE=1
VENV_PYTHON=/usr/bin/python3
while (($#)); do
  case "$1" in
    --instance) INSTANCE=$2; shift ;;
    --server-name) SERVER_NAME=$2; shift ;;
    --port) PORT=$2; shift ;;
    --tls-cert) TLS_CERT=$2; shift ;;
    --tls-key) TLS_KEY=$2; shift ;;
    --database-url) DATABASE_URL_GIVEN=$2; shift ;;
    --redis-url) REDIS_URL_GIVEN=$2; shift ;;
    --postgres-port) PG_PORT=$2; shift ;;
    --postgres-socket-dir) PG_SOCKET=$2; shift ;;
    --redis-port) REDIS_PORT=$2; shift ;;
    --redis-config) REDIS_CONF=$2; shift ;;
    --embedded) EMBEDDED=1 ;;
    --no-nginx) NGINX="" ;;
    --skip-packages) PACKAGES="" ;;
    --skip-image) IMAGE="" ;;
    --python) VENV_PYTHON=$2; shift ;;
    --root) ROOT=${2%/}; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown option: $1 (--help lists them)" >&2; exit 2 ;;
  esac
  shift
done

SRC=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=lib.sh
. "$SRC/deploy/lib.sh"
anyon_paths
REDIS_CONF=${REDIS_CONF:-$ROOT/etc/redis/redis.conf}
[[ $EUID -eq 0 ]] || { echo "run as root (sudo $0): it creates a user, services and a database" >&2; exit 1; }
if [[ -n "$TLS_CERT$TLS_KEY" && ( -z "$TLS_CERT" || -z "$TLS_KEY" ) ]]; then
  echo "--tls-cert and --tls-key go together" >&2; exit 2
fi

CHANGED=0
RESTART=""   # set when something the running services read changed (code, dependencies, settings, units)
report() {   # report ITEM STATE: one line per item; anything but "unchanged" counts as a change
  printf '  %-26s %s\n' "$1" "$2"
  [[ "$2" == unchanged* ]] || CHANGED=$((CHANGED + 1))
}
fail() { echo "install: $*" >&2; exit 1; }
trap 'echo "install: failed at line $LINENO: $BASH_COMMAND" >&2' ERR

# Before anything changes: another installation of this host must not have the same port.
PORT_NOW=$(env_value ANYON_PORT)
if [[ -z "$PORT" ]]; then PORT=${PORT_NOW:-8000}; PORT_FORCE=""; else PORT_FORCE=1; fi
for other in "$ROOT"/etc/anyon*/env; do
  [[ -f "$other" && "$other" != "$ENV_FILE" ]] || continue
  [[ "$(env_value ANYON_PORT "$other")" != "$PORT" ]] || fail "port $PORT is taken by the installation of $other: --port"
done

echo "Anyon Cloud: installation '$INSTANCE' (user $NAME, settings $ENV_FILE)"
SYSTEMD=""
systemd_running && SYSTEMD=1

# --- Debian packages ------------------------------------------------------------------------------------------------
local_db() { [[ -z "$EMBEDDED" && -z "$DATABASE_URL_GIVEN" ]]; }
local_redis() { [[ -z "$EMBEDDED" && -z "$REDIS_URL_GIVEN" ]]; }
if [[ -n "$PACKAGES" ]]; then
  wanted=(python3-venv openssl util-linux)
  local_db && wanted+=(postgresql)
  [[ -z "$EMBEDDED" ]] && wanted+=(postgresql-client)
  local_redis && wanted+=(redis-server)
  [[ -n "$NGINX" ]] && wanted+=(nginx)
  command -v dockerd >/dev/null || command -v docker >/dev/null || wanted+=(docker.io)
  missing=()
  for pkg in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    report packages "installed ${missing[*]}"
  else
    report packages unchanged
  fi
fi

# --- Docker engine --------------------------------------------------------------------------------------------------
if ! docker info >/dev/null 2>&1; then
  if [[ -n "$SYSTEMD" ]]; then systemctl enable --now docker >/dev/null 2>&1 || true; fi
  docker info >/dev/null 2>&1 || fail "the Docker engine does not answer (docker info); start it and run this again"
fi
DOCKER_SOCKET=/var/run/docker.sock
DOCKER_GROUP=$(stat -c %G "$DOCKER_SOCKET" 2>/dev/null || echo "")
[[ -n "$DOCKER_GROUP" && "$DOCKER_GROUP" != root ]] ||
  fail "$DOCKER_SOCKET must belong to a group (docker) that the service user can join"

# --- service user ---------------------------------------------------------------------------------------------------
# Its own system uid: never the containers' uid (ANYON_CONTAINER_UID, 61000), which no host account may have (an
# account with it could read every agent's /proc/<pid>/environ and secret files). The worker and the egress proxy
# give each attempt's secret dir and sockets to that uid with CAP_CHOWN (AmbientCapabilities in their units).
CONTAINER_UID=$(env_value ANYON_CONTAINER_UID); CONTAINER_UID=${CONTAINER_UID:-61000}
if uid=$(id -u "$NAME" 2>/dev/null); then
  [[ "$uid" != "$CONTAINER_UID" ]] || fail "user $NAME has uid $uid, the containers' uid: give it another \
(usermod -u <uid> $NAME; groupmod -g <gid> $NAME; chown -R $NAME: $DATA_DIR $RUN_DIR) and run this again"
  if id -nG "$NAME" | tr ' ' '\n' | grep -qx "$DOCKER_GROUP"; then
    report "service user" "unchanged ($NAME, uid $uid)"
  else
    usermod -a -G "$DOCKER_GROUP" "$NAME"
    report "service user" "added $NAME to group $DOCKER_GROUP"
  fi
else
  useradd --system --user-group --home-dir "$DATA_DIR" --no-create-home --shell /usr/sbin/nologin \
    --groups "$DOCKER_GROUP" --comment "Anyon Cloud ($INSTANCE)" "$NAME"
  uid=$(id -u "$NAME")
  [[ "$uid" != "$CONTAINER_UID" ]] || fail "useradd gave $NAME uid $uid, the containers' uid"
  report "service user" "created $NAME (uid $uid, group $DOCKER_GROUP)"
fi

# --- folders --------------------------------------------------------------------------------------------------------
ensure_dir() {  # ensure_dir PATH OWNER:GROUP MODE ITEM
  local path=$1 owner=$2 mode=$3 item=$4 state=unchanged
  if [[ -L "$path" || ( -e "$path" && ! -d "$path" ) ]]; then fail "$path exists and is not a folder"; fi
  if [[ ! -d "$path" ]]; then mkdir -p "$path"; state="created $path"; fi
  if [[ "$(stat -c '%U:%G %a' "$path")" != "$owner $mode" ]]; then
    chown "$owner" "$path"; chmod "$mode" "$path"
    [[ "$state" == unchanged ]] && state="fixed owner/mode of $path ($owner $mode)"
  fi
  report "$item" "$state"
}
ensure_dir "$BASE_DIR" root:root 755 "base folder"
ensure_dir "$DATA_DIR" "$NAME:$NAME" 700 "data folder"
ensure_dir "$BACKUP_DIR" root:root 700 "backup folder"
ensure_dir "$ETC_DIR" "root:$NAME" 750 "settings folder"
# The temp dir of secret dirs and sockets: on tmpfs (/run), the service user's only, made again at every boot.
ensure_dir "$RUN_DIR" "$NAME:$NAME" 700 "temp folder"

install_file() {  # install_file SOURCE TARGET OWNER:GROUP MODE ITEM: copy when it differs, fix owner and mode
  local source=$1 target=$2 owner=$3 mode=$4 item=$5 state=unchanged
  mkdir -p "$(dirname "$target")"
  if [[ ! -f "$target" ]]; then state="created $target"; elif ! cmp -s "$source" "$target"; then state="changed"; fi
  if [[ "$state" != unchanged ]]; then
    install -o "${owner%%:*}" -g "${owner##*:}" -m "$mode" "$source" "$target.new"
    mv -f "$target.new" "$target"
  elif [[ "$(stat -c '%U:%G %a' "$target")" != "$owner $mode" ]]; then
    chown "$owner" "$target"; chmod "$mode" "$target"; state="fixed owner/mode ($owner $mode)"
  fi
  report "$item" "$state"
  [[ "$state" == unchanged ]]
}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

printf 'd %s 0700 %s %s -\n' "$RUN_DIR" "$NAME" "$NAME" >"$WORK/tmpfiles"
install_file "$WORK/tmpfiles" "$ROOT/etc/tmpfiles.d/$NAME.conf" root:root 644 "tmpfiles.d" || true

# --- code -----------------------------------------------------------------------------------------------------------
# Copied, owned by root: the service user runs the code but cannot change it.
if git -C "$SRC" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git -C "$SRC" ls-files -z --cached --others --exclude-standard >"$WORK/files0"
else
  (cd "$SRC" && find . -type f -not -path './.git/*' -not -path './.venv*' -not -path './var/*' \
    -not -path './test-artifacts/*' -not -name '*.pyc' -printf '%P\0') >"$WORK/files0"
fi
(cd "$SRC" && while IFS= read -r -d '' f; do [[ -f "$f" ]] && printf '%s\0' "$f"; done <"$WORK/files0" |
  sort -z >"$WORK/files")
SOURCE_HASH=$(cd "$SRC" && xargs -0 sha256sum -- <"$WORK/files" | sha256sum | cut -c1-64)
if [[ -f "$APP_DIR/.anyon-source" && "$(cat "$APP_DIR/.anyon-source")" == "$SOURCE_HASH" ]]; then
  report code "unchanged ($APP_DIR)"
else
  rm -rf "$APP_DIR.new" "$APP_DIR.old"
  mkdir -p "$APP_DIR.new"
  tar -C "$SRC" --null -T "$WORK/files" -cf - | tar -C "$APP_DIR.new" --no-same-owner -xf -
  [[ -d "$APP_DIR/.venv" ]] && mv "$APP_DIR/.venv" "$APP_DIR.new/.venv"
  echo "$SOURCE_HASH" >"$APP_DIR.new/.anyon-source"
  chown -R root:root "$APP_DIR.new"
  chmod -R u+rwX,go+rX,go-w "$APP_DIR.new"
  [[ -d "$APP_DIR" ]] && mv "$APP_DIR" "$APP_DIR.old"
  mv "$APP_DIR.new" "$APP_DIR"
  rm -rf "$APP_DIR.old"
  report code "copied to $APP_DIR"
  RESTART=1
fi

# A trial of `make run` in the checkout (SQLite, a development key) is not this installation's: say so, once.
if [[ -f "$SRC/var/anyon.sqlite3" ]]; then
  echo "  note: $SRC/var/anyon.sqlite3 is a trial database of make run (and ~/.local/share/anyon/dev-secret-key its"
  echo "        development key): this installation does not use them; remove them when you no longer need them"
fi

# --- virtualenv -----------------------------------------------------------------------------------------------------
"$VENV_PYTHON" -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 13))' ||
  fail "$VENV_PYTHON is not Python 3.11 to 3.13 (--python)"
DEPS_HASH=$(cat "$APP_DIR/pyproject.toml" "$APP_DIR/constraints.txt" <("$VENV_PYTHON" -VV) | sha256sum | cut -c1-64)
if [[ -x "$PYTHON" && -f "$APP_DIR/.venv/.anyon-deps" && "$(cat "$APP_DIR/.venv/.anyon-deps")" == "$DEPS_HASH" ]]; then
  report virtualenv unchanged
else
  [[ -x "$PYTHON" ]] || "$VENV_PYTHON" -m venv "$APP_DIR/.venv"
  # The dependencies only: the code runs from the app folder (the units' WorkingDirectory).
  "$PYTHON" -c 'import sys, tomllib; print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))' \
    "$APP_DIR/pyproject.toml" >"$WORK/requirements.txt"
  "$PYTHON" -m pip install --disable-pip-version-check -c "$APP_DIR/constraints.txt" -r "$WORK/requirements.txt" \
    >"$WORK/pip.log" 2>&1 || { tail -n 40 "$WORK/pip.log"; fail "pip install failed"; }
  echo "$DEPS_HASH" >"$APP_DIR/.venv/.anyon-deps"
  chmod -R go+rX,go-w "$APP_DIR/.venv"
  report virtualenv "installed the dependencies ($APP_DIR/.venv)"
  RESTART=1
fi

# --- PostgreSQL -----------------------------------------------------------------------------------------------------
DB_URL_NOW=$(env_value DATABASE_URL)
pg_super() {  # SQL on stdin, as the postgres superuser over the local socket
  (cd / && runuser -u postgres -- psql -X -q -t -A -v ON_ERROR_STOP=1 -h "$PG_SOCKET" -p "$PG_PORT" -d postgres)
}
DATABASE_URL_VALUE="" DATABASE_URL_FORCE=""
if [[ -n "$EMBEDDED" ]]; then
  report database "unchanged (embedded: SQLite in $DATA_DIR)"
elif [[ -n "$DATABASE_URL_GIVEN" ]]; then
  DATABASE_URL_VALUE=$DATABASE_URL_GIVEN DATABASE_URL_FORCE=1
  if [[ "$DB_URL_NOW" == "$DATABASE_URL_GIVEN" ]]; then report database "unchanged (given)"; else report database given; fi
elif [[ -n "$DB_URL_NOW" && "$DB_URL_NOW" != "postgres://$DB_NAME:"*"@127.0.0.1:$PG_PORT/$DB_NAME" ]]; then
  report database "unchanged (DATABASE_URL of the settings file, not managed here)"
else
  if ! pg_isready -q -h "$PG_SOCKET" -p "$PG_PORT"; then
    [[ -n "$SYSTEMD" ]] && systemctl enable --now postgresql >/dev/null
    for _ in $(seq 1 30); do pg_isready -q -h "$PG_SOCKET" -p "$PG_PORT" && break; sleep 1; done
    pg_isready -q -h "$PG_SOCKET" -p "$PG_PORT" || fail "PostgreSQL does not answer on $PG_SOCKET port $PG_PORT"
  fi
  state=unchanged
  password=""
  if [[ -n "$DB_URL_NOW" ]]; then password=${DB_URL_NOW#postgres://"$DB_NAME":}; password=${password%%@*}; fi
  if [[ -z "$(echo "SELECT 1 FROM pg_roles WHERE rolname = '$DB_NAME'" | pg_super)" ]]; then
    password=$(openssl rand -hex 24)
    echo "CREATE ROLE \"$DB_NAME\" LOGIN PASSWORD '$password'" | pg_super
    state="created role $DB_NAME"
  elif [[ -z "$password" ]] || ! PGPASSWORD=$password psql -X -q -h 127.0.0.1 -p "$PG_PORT" -U "$DB_NAME" \
    -d postgres -c 'SELECT 1' >/dev/null 2>&1; then
    password=$(openssl rand -hex 24)
    echo "ALTER ROLE \"$DB_NAME\" LOGIN PASSWORD '$password'" | pg_super
    state="set a new password of role $DB_NAME"
  fi
  if [[ -z "$(echo "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'" | pg_super)" ]]; then
    echo "CREATE DATABASE \"$DB_NAME\" OWNER \"$DB_NAME\" ENCODING 'UTF8' TEMPLATE template0" | pg_super
    [[ "$state" == unchanged ]] && state="created database $DB_NAME" || state="$state, database $DB_NAME"
  fi
  DATABASE_URL_VALUE="postgres://$DB_NAME:$password@127.0.0.1:$PG_PORT/$DB_NAME" DATABASE_URL_FORCE=1
  [[ "$state" == unchanged ]] && state="unchanged (database $DB_NAME on port $PG_PORT)"
  report PostgreSQL "$state"
fi

# --- Redis ----------------------------------------------------------------------------------------------------------
REDIS_URL_VALUE="" REDIS_URL_FORCE=""
# shellcheck source=redis.sh
. "$SRC/deploy/redis.sh"
if [[ -n "$EMBEDDED" ]]; then
  :
elif [[ -n "$REDIS_URL_GIVEN" ]]; then
  REDIS_URL_VALUE=$REDIS_URL_GIVEN REDIS_URL_FORCE=1
  if [[ "$(env_value REDIS_URL)" == "$REDIS_URL_GIVEN" ]]; then report Redis "unchanged (given)"; else report Redis given; fi
else
  if ! redis_answers "$REDIS_PORT"; then
    [[ -n "$SYSTEMD" ]] && systemctl enable --now redis-server >/dev/null
    for _ in $(seq 1 30); do redis_answers "$REDIS_PORT" && break; sleep 1; done
    redis_answers "$REDIS_PORT" || fail "Redis does not answer on port $REDIS_PORT"
  fi
  # A password: on 127.0.0.1 without one, every account of the host could read the queue and publish on the
  # channel layer. It lives in Redis's config file (--redis-config) and goes into REDIS_URL, never to the output.
  redis_require_password "$REDIS_CONF" "$REDIS_PORT" || fail "Redis password not set (above)"
  REDIS_URL_NOW=$(env_value REDIS_URL)
  managed="^redis://(:[^@]*@)?127\.0\.0\.1:$REDIS_PORT/([0-9]+)$"
  if [[ -n "$REDIS_URL_NOW" && ! "$REDIS_URL_NOW" =~ $managed ]]; then
    report Redis "unchanged (REDIS_URL of the settings file, not managed here)"
  else
    if [[ "$REDIS_URL_NOW" =~ $managed ]]; then
      index=${BASH_REMATCH[2]}
    else
      # Each installation of the host its own Redis database: queues, channel layer and cache of one never mix.
      used=$(cat "$ROOT"/etc/anyon*/env 2>/dev/null |
        sed -E -n "s#^REDIS_URL=redis://(:[^@]*@)?127\.0\.0\.1:$REDIS_PORT/##p" || true)
      index=0
      while grep -qx "$index" <<<"$used"; do index=$((index + 1)); done
    fi
    REDIS_URL_VALUE="redis://:$(redis_url_password "$REDIS_PASSWORD")@127.0.0.1:$REDIS_PORT/$index" REDIS_URL_FORCE=1
    if [[ "$REDIS_URL_VALUE" == "$REDIS_URL_NOW" ]]; then state="unchanged (database $index on port $REDIS_PORT)"
    elif [[ -n "$REDIS_URL_NOW" ]]; then state="database $index on port $REDIS_PORT, its password put in REDIS_URL"
    else state="database $index on port $REDIS_PORT"; fi
    [[ "$REDIS_PASSWORD_STATE" == unchanged ]] || state="$state; $REDIS_PASSWORD_STATE"
    report Redis "$state"
    for other in "$ROOT"/etc/anyon*/env; do  # other installations on this Redis without its password stop working
      [[ -f "$other" && "$other" != "$ENV_FILE" ]] || continue
      if [[ "$(env_value REDIS_URL "$other")" =~ ^redis://127\.0\.0\.1:$REDIS_PORT/ ]]; then
        echo "  note: $other has REDIS_URL without Redis's password now required: run deploy/install.sh for that \
installation again (--instance)"
      fi
    done
  fi
fi

# --- settings file --------------------------------------------------------------------------------------------------
# root:$NAME 0640: the services and `anyon-ctl` (as $NAME) read it, only root changes it. It holds the secret key.
HOSTS_FORCE=1
if [[ -z "$SERVER_NAME" ]]; then
  HOSTS_FORCE="" SERVER_NAME=$(env_value ALLOWED_HOSTS); SERVER_NAME=${SERVER_NAME%%,*}
  [[ -n "$SERVER_NAME" ]] || SERVER_NAME=$(hostname -f 2>/dev/null || hostname)
fi
if [[ -f "$ENV_FILE" ]]; then cp "$ENV_FILE" "$WORK/env"; else
  cat >"$WORK/env" <<EOF
# Anyon Cloud settings of installation '$INSTANCE' (docs/DEPLOYMENT.md, "Settings"), read by its systemd units and
# by $NAME-ctl. KEY=value lines, no quotes. deploy/install.sh adds what is missing and changes only what its options
# name; everything else here is yours.
#
# ANYON_SECRET_KEY encrypts every stored credential: keep a copy of this file apart from the database backups.
EOF
fi
set_key() {  # set_key KEY VALUE [force]: add when missing; replace only when forced
  local key=$1 value=$2 force=${3:-}
  if grep -q "^$key=" "$WORK/env"; then
    if [[ -n "$force" && "$(env_value "$key" "$WORK/env")" != "$value" ]]; then
      grep -v "^$key=" "$WORK/env" >"$WORK/env.tmp"; mv "$WORK/env.tmp" "$WORK/env"
      printf '%s=%s\n' "$key" "$value" >>"$WORK/env"
    fi
  else
    printf '%s=%s\n' "$key" "$value" >>"$WORK/env"
  fi
}
set_key DEBUG false
set_key ANYON_INSTANCE "$INSTANCE" force
set_key ANYON_ENV_FILE "$ENV_FILE" force  # where rotate_secret_key writes the key and the egress proxy re-reads it
grep -q '^ANYON_SECRET_KEY=' "$WORK/env" ||
  set_key ANYON_SECRET_KEY "$("$VENV_PYTHON" -c 'import secrets; print(secrets.token_urlsafe(48))')"
[[ -n "$DATABASE_URL_VALUE" ]] && set_key DATABASE_URL "$DATABASE_URL_VALUE" "$DATABASE_URL_FORCE"
[[ -n "$REDIS_URL_VALUE" ]] && set_key REDIS_URL "$REDIS_URL_VALUE" "$REDIS_URL_FORCE"
set_key ALLOWED_HOSTS "$SERVER_NAME,127.0.0.1,localhost" "$HOSTS_FORCE"
set_key CSRF_TRUSTED_ORIGINS "https://$SERVER_NAME" "$HOSTS_FORCE"
[[ -n "$NGINX" ]] && set_key ANYON_LOGIN_CLIENT_IP_HEADER X-Real-IP
set_key ANYON_HOST 127.0.0.1
set_key ANYON_PORT "$PORT" "$PORT_FORCE"
set_key ANYON_DATA_DIR "$DATA_DIR" force
set_key ANYON_TEMP_DIR "$RUN_DIR" force
set_key EMAIL_URL "consolemail://"
if install_file "$WORK/env" "$ENV_FILE" "root:$NAME" 640 "settings file"; then :; else RESTART=1; fi

# --- systemd units --------------------------------------------------------------------------------------------------
unit() {  # unit ROLE DESCRIPTION EXECSTART [CAPABILITIES] [AFTER]
  local role=$1 description=$2 exec=$3 caps=${4:-}
  cat <<EOF
# Written by deploy/install.sh (installation '$INSTANCE'); re-running it rewrites this file.
[Unit]
Description=Anyon Cloud $description ($INSTANCE)
After=network-online.target docker.service postgresql.service redis-server.service${5:+ $5}
Wants=network-online.target${5:+ $5}

[Service]
User=$NAME
Group=$NAME
WorkingDirectory=$APP_DIR
EnvironmentFile=$ENV_FILE
ExecStart=$exec
EOF
  if [[ -n "$caps" ]]; then
    cat <<EOF
# Not root: CAP_CHOWN gives each attempt's secret dir and sockets to the containers' uid (ANYON_CONTAINER_UID);
# the egress proxy's CAP_DAC_OVERRIDE lets it bind the sockets in that dir, which is then the containers' (0700).
AmbientCapabilities=$caps
CapabilityBoundingSet=$caps
EOF
  else
    echo "CapabilityBoundingSet="
  fi
  [[ "$role" == worker ]] || cat <<'EOF'
# One descriptor per open connection: websockets (web); each sealed run's sockets and upstream connections (egress).
LimitNOFILE=65536
EOF
  cat <<'EOF'
NoNewPrivileges=yes
ProtectSystem=full
ProtectHome=yes
PrivateTmp=yes
# SIGTERM to the main process, SIGKILL to whatever is left after the timeout (qcluster can hang on SIGTERM).
KillMode=mixed
TimeoutStopSec=30
Restart=always
RestartSec=2

[Install]
WantedBy=multi-user.target
EOF
}
unit egress "egress proxy" "$PYTHON manage.py egress_proxy" "CAP_CHOWN CAP_DAC_OVERRIDE" >"$WORK/egress"
unit worker worker "$PYTHON manage.py qcluster" CAP_CHOWN "$NAME-egress.service" >"$WORK/worker"
unit web web "$PYTHON manage.py serve --no-worker" >"$WORK/web"
for role in egress worker web; do
  if command -v systemd-analyze >/dev/null && [[ -x "$PYTHON" ]]; then
    cp "$WORK/$role" "$WORK/$NAME-$role.service"
    out=$(systemd-analyze verify "$WORK/$NAME-$role.service" 2>&1 | grep -v 'Unit .* not found' || true)
    [[ -z "$out" ]] || fail "unit $NAME-$role.service does not verify: $out"
  fi
  install_file "$WORK/$role" "$UNIT_DIR/$NAME-$role.service" root:root 644 "unit $role" || RESTART=1
done
if [[ -n "$SYSTEMD" && -n "$RESTART" ]]; then systemctl daemon-reload; fi

# --- nginx ----------------------------------------------------------------------------------------------------------
if [[ -n "$NGINX" ]]; then
  if [[ -z "$TLS_CERT" ]]; then
    TLS_CERT="$ETC_DIR/tls/self-signed.crt" TLS_KEY="$ETC_DIR/tls/self-signed.key"
    if [[ -f "$TLS_CERT" && -f "$TLS_KEY" ]]; then
      report "TLS certificate" "unchanged (self-signed)"
    else
      install -d -m 700 "$ETC_DIR/tls"
      openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=$SERVER_NAME" \
        -addext "subjectAltName=DNS:$SERVER_NAME" -keyout "$TLS_KEY" -out "$TLS_CERT" 2>/dev/null
      chmod 600 "$TLS_KEY"
      report "TLS certificate" "self-signed for $SERVER_NAME (a trial: pass --tls-cert/--tls-key)"
    fi
  fi
  cat >"$WORK/site" <<EOF
# Written by deploy/install.sh (installation '$INSTANCE'); re-running it rewrites this file.
server {
    listen 80;
    server_name $SERVER_NAME;
    return 301 https://\$host\$request_uri;
}
server {
    listen 443 ssl http2;
    server_name $SERVER_NAME;
    ssl_certificate     $TLS_CERT;
    ssl_certificate_key $TLS_KEY;
    client_max_body_size 10m;
    location / {
        proxy_pass http://127.0.0.1:$PORT;
        proxy_http_version 1.1;
        proxy_set_header Upgrade \$http_upgrade;
        proxy_set_header Connection "upgrade";
        proxy_set_header Host \$host;
        proxy_set_header X-Forwarded-Proto \$scheme;
        proxy_set_header X-Real-IP \$remote_addr;  # ANYON_LOGIN_CLIENT_IP_HEADER=X-Real-IP
        proxy_read_timeout 3600s;
    }
}
EOF
  SITE="$ROOT/etc/nginx/sites-available/$NAME"
  if command -v nginx >/dev/null; then
    printf 'error_log stderr;\npid %s/nginx.pid;\nevents {}\nhttp { include %s; }\n' "$WORK" "$WORK/site" >"$WORK/nginx.conf"
    nginx -t -q -c "$WORK/nginx.conf" -p "$WORK" 2>"$WORK/nginx.err" || fail "the nginx site does not pass nginx -t: $(cat "$WORK/nginx.err")"
  fi
  site_changed=""
  install_file "$WORK/site" "$SITE" root:root 644 "nginx site" || site_changed=1
  if [[ "$(readlink "$ROOT/etc/nginx/sites-enabled/$NAME" 2>/dev/null)" != "$SITE" ]]; then
    mkdir -p "$ROOT/etc/nginx/sites-enabled"
    ln -sfn "$SITE" "$ROOT/etc/nginx/sites-enabled/$NAME"
    report "nginx site" "enabled"
    site_changed=1
  fi
  if [[ -n "$site_changed" && -n "$SYSTEMD" ]] && systemctl is-active --quiet nginx; then
    nginx -t -q && systemctl reload nginx
  elif [[ -n "$site_changed" && -n "$SYSTEMD" ]]; then
    systemctl enable --now nginx >/dev/null 2>&1 || report nginx "could not start it: systemctl status nginx"
  fi
fi

# --- anyon-ctl ------------------------------------------------------------------------------------------------------
printf '#!/bin/sh\n# Written by deploy/install.sh: operations of installation %s (backup, restore, doctor, manage ...).\nexec %q --instance %q --root %q "$@"\n' \
  "$INSTANCE" "$APP_DIR/deploy/anyon-ctl" "$INSTANCE" "$ROOT" >"$WORK/ctl"
install_file "$WORK/ctl" "$ROOT/usr/local/sbin/$NAME-ctl" root:root 755 "$NAME-ctl" || true

# --- database schema, cache table, admin ----------------------------------------------------------------------------
RUNNING=()
if [[ -n "$SYSTEMD" ]]; then mapfile -t RUNNING < <(active_units); fi
plan=$(run_manage migrate --plan 2>"$WORK/plan.err") ||
  fail "cannot read the migration state (nothing was stopped): $(tail -n 3 "$WORK/plan.err")"
if [[ "$plan" == *"No planned migration operations."* ]]; then
  report migrations unchanged
else
  # No process runs old code on a new schema: web first, the egress proxy last (a run in progress ends cleanly).
  for ((i = ${#RUNNING[@]} - 1; i >= 0; i--)); do systemctl stop "${RUNNING[i]}"; done
  run_manage migrate --noinput >"$WORK/migrate.log" || { cat "$WORK/migrate.log"; fail "migrate failed"; }
  report migrations "applied $(grep -c '  Applying ' "$WORK/migrate.log" || true)"
  RESTART=1
fi
if [[ -z "$(env_value REDIS_URL)" ]]; then
  cache=$(run_manage createcachetable --dry-run)
  if [[ -z "$cache" || "$cache" == *"already exists"* ]]; then report "cache table" unchanged; else
    run_manage createcachetable; report "cache table" created
  fi
fi
admin=$(run_manage ensure_admin)
if [[ -z "$admin" ]]; then report admin unchanged; else report admin created; printf '%s\n' "$admin" | sed 's/^/    /'; fi

# --- runtime image --------------------------------------------------------------------------------------------------
if [[ -n "$IMAGE" ]]; then
  image=$(run_manage shell -v 0 -c 'from django.conf import settings; print(settings.ANYON_CLOUD_IMAGE)' | tail -n 1)
  before=$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)
  ANYON_CLOUD_IMAGE=$image "$APP_DIR/runtime-image/build.sh" >"$WORK/image.log" 2>&1 ||
    { tail -n 40 "$WORK/image.log"; fail "the runtime image build failed"; }
  after=$(docker image inspect -f '{{.Id}}' "$image")
  if [[ "$before" == "$after" ]]; then report "runtime image" "unchanged ($image)"; else report "runtime image" "built $image"; fi
fi

# --- services -------------------------------------------------------------------------------------------------------
if [[ -n "$SYSTEMD" ]]; then
  enabled=()
  for u in "${UNITS[@]}"; do systemctl is-enabled --quiet "$u" 2>/dev/null || enabled+=("$u"); done
  if ((${#enabled[@]})); then systemctl enable --quiet "${enabled[@]}"; fi
  for u in "${UNITS[@]}"; do
    if ! systemctl is-active --quiet "$u"; then systemctl start "$u"; report "$u" started
    elif [[ -n "$RESTART" ]]; then systemctl restart "$u"; report "$u" restarted
    else report "$u" unchanged; fi
  done
  ok=""
  for _ in $(seq 1 20); do  # the worker's first heartbeat takes a few seconds
    if run_manage doctor >"$WORK/doctor" 2>&1; then ok=1; break; fi
    sleep 1
  done
  cat "$WORK/doctor"
  [[ -n "$ok" ]] || fail "doctor reports a failed check (above)"
else
  echo "  systemd is not running here: the units are written, not started; start them, then run $NAME-ctl doctor"
fi

if ((CHANGED)); then echo "Done: $CHANGED item(s) changed."; else echo "Done: nothing changed."; fi
echo "Operations: $ROOT/usr/local/sbin/$NAME-ctl (doctor, backup, restore, manage ...). Settings: $ENV_FILE"
