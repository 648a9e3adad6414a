# Shared by deploy/install.sh and deploy/anyon-ctl: the names and paths of one installation, and how to run
# manage.py the way the units run it. Sourced, not executed.
# shellcheck shell=bash

# Names and paths of installation $INSTANCE under $ROOT (empty: the real file system; tests use a temp dir).
# shellcheck disable=SC2034  # the variables are the callers'
anyon_paths() {
  if [[ ! "$INSTANCE" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$ ]]; then
    echo "instance '$INSTANCE': use 1-63 letters, digits, '_', '.' or '-' (ANYON_INSTANCE)" >&2
    return 1
  fi
  if [[ "$INSTANCE" == default ]]; then NAME=anyon; else NAME="anyon-$INSTANCE"; fi
  NAME=${NAME,,}                       # user, units and folders
  DB_NAME=${NAME//[.-]/_}              # PostgreSQL role and database
  ETC_DIR="$ROOT/etc/$NAME"
  ENV_FILE="$ETC_DIR/env"
  BASE_DIR="$ROOT/srv/$NAME"
  APP_DIR="$BASE_DIR/app"
  DATA_DIR="$BASE_DIR/data"
  BACKUP_DIR="$BASE_DIR/backups"
  RUN_DIR="$ROOT/run/$NAME"
  UNIT_DIR="$ROOT/etc/systemd/system"
  UNITS=("$NAME-egress.service" "$NAME-worker.service" "$NAME-web.service")
  PYTHON="$APP_DIR/.venv/bin/python"
}

# Is systemd the init system here? (Not in most containers, nor in CI: the units are written but not started.)
systemd_running() {
  local state
  state=$(systemctl is-system-running 2>/dev/null || true)
  case "$state" in running | degraded | starting | initializing | maintenance) return 0 ;; *) return 1 ;; esac
}

# A value of the settings file (KEY=value lines), empty when absent.
env_value() {
  local key=$1 file=${2:-$ENV_FILE}
  [[ -r "$file" ]] || return 0
  sed -n "s/^${key}=//p" "$file" | tail -n 1
}

# manage.py as the service user, with the settings file and the capability of the worker's unit (CAP_CHOWN), from
# the app folder: what the units run, and what an operator must run (never as root, never without the settings).
# Logs at WARNING unless the settings file says otherwise (the units log at INFO to the journal).
run_manage() {
  (
    cd "$APP_DIR" || exit 1
    # shellcheck disable=SC2016  # "$1" and "$@" are expanded by that sh, not here
    setpriv --reuid="$NAME" --regid="$NAME" --init-groups --inh-caps=-all,+chown --ambient-caps=+chown \
      env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$DATA_DIR" LANG=C.UTF-8 ANYON_LOG_LEVEL=WARNING \
      sh -c 'set -a; . "$1"; set +a; shift; exec "$@"' sh "$ENV_FILE" "$PYTHON" manage.py "$@"
  )
}

# The units of this installation that are running (systemd only).
active_units() {
  local unit
  for unit in "${UNITS[@]}"; do
    if systemctl is-active --quiet "$unit"; then printf '%s\n' "$unit"; fi
  done
}
