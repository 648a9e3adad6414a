#!/usr/bin/env bash
# Make a Debian base image (default: trixie, Debian 13) without any image registry:
#   debootstrap --variant=minbase -> apt sources (suite, -updates, -security) -> tar -> docker import.
# Idempotent: does nothing when the image already exists (use --force to rebuild).
#
# Usage: runtime-image/bootstrap-base.sh [--force] [IMAGE]
#   IMAGE   defaults to $ANYON_BASE_IMAGE or anyon/debian-base:$SUITE
#   SUITE   env; Debian suite, default trixie (runtime-image/Dockerfile expects trixie's package versions)
#   MIRROR  env; defaults to the Debian mirror apt on this machine already uses
#   SECURITY_MIRROR  env; defaults to the security mirror apt here uses, else deb.debian.org/debian-security
set -euo pipefail

force=0
if [[ "${1:-}" == "--force" ]]; then force=1; shift; fi
suite="${SUITE:-trixie}"
image="${1:-${ANYON_BASE_IMAGE:-anyon/debian-base:$suite}}"

log() { printf '[bootstrap-base] %s\n' "$*" >&2; }

if [[ $force -eq 0 ]] && docker image inspect "$image" >/dev/null 2>&1; then
  log "$image already present; nothing to do"
  exit 0
fi

command -v debootstrap >/dev/null || { log "debootstrap is missing: apt-get install -y debootstrap"; exit 1; }
[[ $(id -u) -eq 0 ]] || { log "debootstrap needs root"; exit 1; }

mirror_from_apt() {
  # deb822 sources first, then the classic one-line format.
  local uri
  uri=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' \
        | grep -v -- '-security' | head -n1 || true)
  if [[ -z "$uri" ]]; then
    uri=$(grep -hE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
          | grep -v -- '-security' | awk '{for (i=2;i<=NF;i++) if ($i ~ /^https?:/) {print $i; exit}}' | head -n1 || true)
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}
mirror="${MIRROR:-$(mirror_from_apt)}"
security_from_apt() {
  local uri
  uri=$(grep -hE '^URIs:.*-security' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | head -n1 || true)
  if [[ -z "$uri" ]]; then
    uri=$(grep -hE '^deb .*-security' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
          | awk '{for (i=2;i<=NF;i++) if ($i ~ /^https?:/) {print $i; exit}}' | head -n1 || true)
  fi
  echo "${uri:-http://deb.debian.org/debian-security}"
}
security_mirror="${SECURITY_MIRROR:-$(security_from_apt)}"

work=$(mktemp -d /tmp/anyon-debootstrap.XXXXXX)
trap 'rm -rf "$work"' EXIT
log "debootstrap --variant=minbase $suite from $mirror (takes ~30 s)"
debootstrap --variant=minbase "$suite" "$work/root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -n 30 "$work/debootstrap.log" >&2; log "debootstrap failed"; exit 1; }
# Security and point-release updates as in Debian's own images (debootstrap writes only the suite itself).
rm -f "$work/root/etc/apt/sources.list"
cat >"$work/root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: $suite $suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security_mirror
Suites: $suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
# Keep the image lean: no apt lists, no caches, no machine id.
rm -rf "$work/root/var/lib/apt/lists/"* "$work/root/var/cache/apt/"*.bin "$work/root/etc/machine-id"
log "importing as $image"
tar -C "$work/root" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["/bin/bash"]' - "$image" >/dev/null
log "done: $(docker image inspect --format '{{.Id}} {{.Size}} bytes' "$image")"
