#!/usr/bin/env bash
# A second Docker engine on this machine, for the scale-out tests (two hosts: one engine and one worker each).
#   .ci/second-engine.sh start   start it (own socket, data root, exec root, pid file) unless it answers already
#   .ci/second-engine.sh load    copy the images it needs from the first engine (skipped when the ids match)
#   .ci/second-engine.sh stop    stop it (SIGTERM, then SIGKILL after 30 s)
# Paths can be overridden with ANYON_ENGINE2_ROOT (data, default /var/lib/anyon-docker2) and ANYON_ENGINE2_RUN
# (socket, exec root and pid file, default /run/anyon-docker2).
set -euo pipefail

data="${ANYON_ENGINE2_ROOT:-/var/lib/anyon-docker2}"
run="${ANYON_ENGINE2_RUN:-/run/anyon-docker2}"
sock="unix://$run/docker.sock"
pidfile="$run/docker.pid"
logfile="${ANYON_ENGINE2_LOG:-$data.log}"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# The runtime image's tag as the settings derive it: IMAGE_VERSION of runtime-image/Dockerfile is its one source.
image_version=$(sed -n 's/^ARG IMAGE_VERSION=//p' "$here/../runtime-image/Dockerfile")
images=("${ANYON_CLOUD_IMAGE:-anyon/claude-runtime:$image_version}" "${ANYON_BASE_IMAGE:-anyon/debian-base:trixie}")

answers() { docker -H "$sock" version >/dev/null 2>&1; }
# A killed dockerd may stay a zombie until its parent reaps it (kill -0 would still succeed): look at its state.
alive() { [[ -r "/proc/$1/stat" ]] && [[ "$(awk '{print $3}' "/proc/$1/stat")" != Z ]]; }

start() {
  if answers; then echo "second engine already answers at $sock"; return 0; fi
  mkdir -p "$data" "$run/exec"
  # After a kill, stale pid files (the engine's, and its containerd's, which dies with it) would make it wait for
  # processes that are gone.
  local stale
  for stale in "$pidfile" "$run/exec/containerd/containerd.pid"; do
    if [[ -f "$stale" ]] && ! alive "$(cat "$stale")"; then rm -f "$stale"; fi
  done
  # --bridge=none --iptables=false: no network of its own and no firewall rules shared with the first engine.
  setsid dockerd -H "$sock" --data-root "$data" --exec-root "$run/exec" --pidfile "$pidfile" \
    --bridge=none --iptables=false --ip-masq=false --shutdown-timeout=2 >>"$logfile" 2>&1 </dev/null &
  for _ in $(seq 1 120); do
    answers && { echo "second engine answers at $sock"; return 0; }
    sleep 0.5
  done
  echo "second engine did not answer within 60 s:" >&2
  tail -n 40 "$logfile" >&2
  return 1
}

load() {
  for image in "${images[@]}"; do
    want=$(docker image inspect --format '{{.Id}}' "$image")
    have=$(docker -H "$sock" image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
    if [[ "$want" == "$have" ]]; then echo "$image: already loaded"; continue; fi
    echo "$image: loading into the second engine"
    docker save "$image" | docker -H "$sock" load
  done
}

stop() {
  [[ -f "$pidfile" ]] || return 0
  pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 60); do alive "$pid" || { rm -f "$pidfile"; return 0; }; sleep 0.5; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

case "${1:-}" in
  start) start ;;
  load) load ;;
  stop) stop ;;
  *) echo "usage: $0 start|load|stop" >&2; exit 2 ;;
esac
