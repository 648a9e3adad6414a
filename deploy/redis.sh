# The local Redis server's password, for deploy/install.sh. Sourced, not executed.
#
# `requirepass` in the server's config file is where the password lives: every installation of the host reads it
# there, and a running server without it gets it live (CONFIG SET, no restart). The password never appears in a
# command line (redis-cli gets it through REDISCLI_AUTH, CONFIG SET on stdin) nor in the output.
# shellcheck shell=bash

# redis_cli PORT PASSWORD ARGS...: redis-cli on 127.0.0.1, authenticated when PASSWORD is not empty.
redis_cli() {
  local port=$1 password=$2
  shift 2
  (
    if [[ -n "$password" ]]; then export REDISCLI_AUTH=$password; fi
    exec redis-cli --no-auth-warning -h 127.0.0.1 -p "$port" "$@"
  )
}

# redis_answers PORT: a Redis server answers there (with or without a password).
redis_answers() {
  [[ "$(redis_cli "$1" "" ping 2>/dev/null)" =~ ^(PONG|NOAUTH) ]]
}

# redis_config_password CONF: the last `requirepass` of the config file, without quotes ("" when none).
redis_config_password() {
  local value
  value=$(sed -n 's/^[[:space:]]*requirepass[[:space:]]\{1,\}//p' "$1" | tail -n 1)
  value=${value%"${value##*[![:space:]]}"}
  if [[ "$value" =~ ^\"(.*)\"$ || "$value" =~ ^\'(.*)\'$ ]]; then value=${BASH_REMATCH[1]}; fi
  printf '%s' "$value"
}

# redis_require_password CONF PORT: make the server on PORT (whose config file is CONF) require a password; sets
# REDIS_PASSWORD to it and REDIS_PASSWORD_STATE to what was done. Fails (returns 1, with the reason on stderr) when
# the config file is missing or the running server has another password than its file.
# shellcheck disable=SC2034  # the variables are the caller's
redis_require_password() {
  local conf=$1 port=$2 done=()
  if [[ ! -f "$conf" ]]; then
    echo "no Redis config file at $conf (--redis-config): cannot give Redis a password" >&2
    return 1
  fi
  REDIS_PASSWORD=$(redis_config_password "$conf")
  if [[ -z "$REDIS_PASSWORD" ]]; then
    REDIS_PASSWORD=$(openssl rand -hex 32)
    # Appended: the file keeps its owner and mode (Debian's: redis:redis 0640).
    printf '\n# Set by Anyon Cloud (deploy/install.sh): every local account could reach Redis without it.\nrequirepass %s\n' \
      "$REDIS_PASSWORD" >>"$conf"
    done+=("password set in $conf")
  fi
  if [[ "$(stat -c %a "$conf")" =~ [1-7]$ ]]; then
    chmod o-rwx "$conf"
    done+=("$conf no longer readable by others")
  fi
  if [[ "$(redis_cli "$port" "" ping 2>/dev/null)" == PONG ]]; then  # running without one: set it live
    local quoted=${REDIS_PASSWORD//\\/\\\\}
    quoted=${quoted//\"/\\\"}
    printf 'CONFIG SET requirepass "%s"\n' "$quoted" | redis_cli "$port" "" >/dev/null
    ((${#done[@]})) || done+=("password of $conf applied to the running server")
  fi
  if [[ "$(redis_cli "$port" "" ping 2>/dev/null)" == PONG ||
    "$(redis_cli "$port" "$REDIS_PASSWORD" ping 2>/dev/null)" != PONG ]]; then
    echo "Redis on port $port does not accept the requirepass of $conf: restart it (systemctl restart redis-server)" >&2
    return 1
  fi
  REDIS_PASSWORD_STATE=unchanged
  if ((${#done[@]})); then REDIS_PASSWORD_STATE=$(IFS=';'; echo "${done[*]}"); fi
}

# redis_url_password PASSWORD: the password as it goes into a URL (percent-encoded), read from stdin by Python.
redis_url_password() {
  printf '%s' "$1" | "${VENV_PYTHON:-python3}" -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.stdin.read(), safe=""))'
}
