#!/usr/bin/env bash
# A new user's first command, checked: `make run` in a fresh clone (a temporary directory, a free port, its own data
# and temp dirs) until /healthz answers and the runtime image exists, then stopped.
# The virtualenv of this checkout is reused (VENV) so the check stays within minutes; everything else is the clone's.
# Usage: .ci/fresh-clone.sh [TIMEOUT_SECONDS]   (default 600: a missing image is built by make run itself)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
timeout_s="${1:-600}"
venv="${VENV:-$root/.venv}"
log() { printf '[fresh-clone] %s\n' "$*" >&2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/anyon-fresh-clone.XXXXXX")
pid=""
stop() {
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    log "stopping make run ($pid)"
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap stop EXIT

git clone --quiet "$root" "$work/clone"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -m 700 "$work/data" "$work/tmp"
image=$(cd "$work/clone" && ANYON_CLOUD_IMAGE="${ANYON_CLOUD_IMAGE:-}" bash -c \
  'echo "${ANYON_CLOUD_IMAGE:-anyon/claude-runtime:$(sed -n "s/^ARG IMAGE_VERSION=//p" runtime-image/Dockerfile)}"')
log "make run in $work/clone on port $port (image $image)"
# No DEBUG, no key, no other setting from the caller: what a new user has.
setsid env -i PATH="$PATH" HOME="${HOME:-/root}" ANYON_PORT="$port" ANYON_DATA_DIR="$work/data" \
  ANYON_TEMP_DIR="$work/tmp" ANYON_INSTANCE="fresh-clone-$$" ${ANYON_CLOUD_IMAGE:+ANYON_CLOUD_IMAGE="$ANYON_CLOUD_IMAGE"} \
  ${DOCKER_HOST:+DOCKER_HOST="$DOCKER_HOST"} \
  make -C "$work/clone" run VENV="$venv" >"$work/make-run.log" 2>&1 &
pid=$!
start=$SECONDS
answers() {  # any HTTP answer (a 503 names what is missing; the server is up)
  python3 -c 'import sys, urllib.error, urllib.request
try:
    urllib.request.urlopen(sys.argv[1], timeout=2)
except urllib.error.HTTPError:
    pass' "http://127.0.0.1:$port/healthz" 2>/dev/null
}
until answers; do
  if ! kill -0 "$pid" 2>/dev/null; then log "make run ended early:"; tail -n 60 "$work/make-run.log" >&2; exit 1; fi
  if ((SECONDS - start > timeout_s)); then log "no /healthz within $timeout_s s:"; tail -n 60 "$work/make-run.log" >&2; exit 1; fi
  sleep 1
done
log "/healthz answered after $((SECONDS - start)) s"
docker image inspect "$image" >/dev/null || { log "the runtime image $image does not exist"; tail -n 60 "$work/make-run.log" >&2; exit 1; }
log "the runtime image $image exists; make run's output:"
sed 's/^/    /' "$work/make-run.log" >&2
