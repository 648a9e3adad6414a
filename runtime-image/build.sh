#!/usr/bin/env bash
# Build and tag the claude-runtime image, then print the versions found inside it.
#
# Usage: runtime-image/build.sh [--claude-code VERSION] [--base IMAGE] [--ca PATH]... [-- DOCKER_BUILD_ARGS...]
#   --claude-code VERSION  Claude Code release to install (default: the pinned ARG CLAUDE_CODE_VERSION; env
#                 CLAUDE_CODE_VERSION works too). Another release than the pinned one is verified against the
#                 npm integrity the registry reports (looked up with `npm view` during the build, and printed),
#                 and is tagged anyon/claude-runtime:<IMAGE_VERSION>-claude-<VERSION> unless ANYON_CLOUD_IMAGE
#                 is set, so it never replaces the pinned image.
#   --base IMAGE  base image (default: debian:trixie when it can be pulled, else the offline base
#                 $ANYON_BASE_IMAGE or anyon/debian-base:trixie, made by bootstrap-base.sh if absent)
#   --ca PATH     extra CA certificate file or folder (*.crt / *.pem); repeatable; --ca '' means none.
#                 Default: $ANYON_EXTRA_CA_DIR if set (empty = none), else /usr/local/share/ca-certificates/.
#   --if-missing  build only when the tag is absent or was built from other sources (its io.anyon.source label,
#                 a hash of Dockerfile, files/ and builder/, differs); without a Docker engine, say so and exit 0.
#                 `make run` uses it.
#   -- ARGS       passed to `docker build` as they are (e.g. -- --no-cache)
# Env: ANYON_CLOUD_IMAGE  tag to build (default anyon/claude-runtime:<IMAGE_VERSION of the Dockerfile>)
#
# Versions are not repeated here: they are the ARG defaults of runtime-image/Dockerfile.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dockerfile="$here/Dockerfile"
offline_base="${ANYON_BASE_IMAGE:-anyon/debian-base:trixie}"
registry_base="debian:trixie"

log() { printf '[build-image] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
usage() { sed -n '2,/^set -euo/{/^#/p}' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

# Default of `ARG NAME=value` in the Dockerfile.
arg_default() { sed -n "s/^ARG $1=\(.*\)$/\1/p" "$dockerfile" | head -n1; }

base=""
claude_code="${CLAUDE_CODE_VERSION:-}"
ca_set=0
if_missing=0
ca_paths=()
docker_args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --base) [[ $# -ge 2 ]] || die "--base needs a value"; base="$2"; shift 2 ;;
    --base=*) base="${1#--base=}"; shift ;;
    --claude-code) [[ $# -ge 2 ]] || die "--claude-code needs a value"; claude_code="$2"; shift 2 ;;
    --claude-code=*) claude_code="${1#--claude-code=}"; shift ;;
    --ca) [[ $# -ge 2 ]] || die "--ca needs a value"; ca_set=1; [[ -z "$2" ]] || ca_paths+=("$2"); shift 2 ;;
    --ca=*) ca_set=1; [[ -z "${1#--ca=}" ]] || ca_paths+=("${1#--ca=}"); shift ;;
    --if-missing) if_missing=1; shift ;;
    -h | --help) usage; exit 0 ;;
    --) shift; docker_args=("$@"); break ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
if [[ $ca_set -eq 0 ]]; then
  if [[ -n "${ANYON_EXTRA_CA_DIR+set}" ]]; then
    [[ -z "$ANYON_EXTRA_CA_DIR" ]] || ca_paths+=("$ANYON_EXTRA_CA_DIR")
  elif [[ -d /usr/local/share/ca-certificates ]]; then
    ca_paths+=(/usr/local/share/ca-certificates)
  fi
fi

if [[ $if_missing -eq 1 ]] && ! { command -v docker >/dev/null && docker info >/dev/null 2>&1; }; then
  log "no Docker engine answers: the runtime image is not built now (attempts need both; make doctor says more)"
  exit 0
fi
command -v docker >/dev/null || die "docker CLI not found"
docker info >/dev/null 2>&1 || die "no Docker engine answers (is dockerd running? DOCKER_HOST?)"

image_version=$(arg_default IMAGE_VERSION)
[[ -n "$image_version" ]] || die "no 'ARG IMAGE_VERSION=' line in $dockerfile"
pinned_claude_code=$(arg_default CLAUDE_CODE_VERSION)
claude_args=()
if [[ -n "$claude_code" && "$claude_code" != "$pinned_claude_code" ]]; then
  [[ "$claude_code" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "not a release version: $claude_code"
  # Not the pinned release: no pinned integrity either; the builder looks it up and prints it.
  claude_args=(--build-arg "CLAUDE_CODE_VERSION=$claude_code"
    --build-arg CLAUDE_CODE_INTEGRITY_AMD64= --build-arg CLAUDE_CODE_INTEGRITY_ARM64=)
  tag="${ANYON_CLOUD_IMAGE:-anyon/claude-runtime:$image_version-claude-$claude_code}"
  log "Claude Code $claude_code instead of the pinned $pinned_claude_code"
else
  tag="${ANYON_CLOUD_IMAGE:-anyon/claude-runtime:$image_version}"
fi

# What the image is built from (the extra CA certificates aside): a rebuilt tag carries it as a label.
source_hash=$(cd "$here" && find Dockerfile files builder -type f -print0 | LC_ALL=C sort -z \
  | xargs -0 sha256sum | sha256sum | cut -c1-16)
[[ ${#claude_args[@]} -eq 0 ]] || source_hash="$source_hash-claude-$claude_code"
if [[ $if_missing -eq 1 ]]; then
  built_from=$(docker image inspect --format '{{index .Config.Labels "io.anyon.source"}}' "$tag" 2>/dev/null || true)
  if [[ "$built_from" == "$source_hash" ]]; then
    log "$tag is present and up to date"
    exit 0
  fi
  if [[ -n "$built_from" ]] || docker image inspect "$tag" >/dev/null 2>&1; then
    log "$tag was built from other sources (or before its sources were labelled): rebuilding it (1 to 5 minutes)"
  else
    log "$tag is missing: building it (about 5 minutes the first time; progress below)"
  fi
fi

# --- base image -------------------------------------------------------------------------------------------
log "step 1 of 3: the base image"
if [[ -n "$base" ]]; then
  docker image inspect "$base" >/dev/null 2>&1 || docker pull "$base" || die "base image $base unavailable"
else
  log "trying to pull $registry_base"
  if timeout 120 docker pull -q "$registry_base" >/dev/null 2>&1; then
    base="$registry_base"
  elif docker image inspect "$registry_base" >/dev/null 2>&1; then
    log "no registry reachable; using the local copy of $registry_base"
    base="$registry_base"
  else
    log "no registry reachable; using the offline base $offline_base"
    "$here/bootstrap-base.sh" "$offline_base"
    base="$offline_base"
  fi
fi

# --- temporary build context (extra CA certificates are never committed) -------------------------------------
context=$(mktemp -d "${TMPDIR:-/tmp}/anyon-image-context.XXXXXX")
trap 'rm -rf "$context"' EXIT
cp "$dockerfile" "$context/Dockerfile"
cp -R "$here/files" "$context/files"
cp -R "$here/builder" "$context/builder"
mkdir "$context/extra-ca"
n=0
add_ca() {  # copy one certificate file under a unique name
  n=$((n + 1))
  local name
  name=$(basename "$1")
  cp "$1" "$context/extra-ca/$(printf '%02d' "$n")-${name%.*}.crt"
  log "extra CA: $1"
}
for path in "${ca_paths[@]}"; do
  if [[ -d "$path" ]]; then
    while IFS= read -r -d '' file; do add_ca "$file"; done \
      < <(find -L "$path" -type f \( -name '*.crt' -o -name '*.pem' \) -print0 | sort -z)
  elif [[ -f "$path" ]]; then
    add_ca "$path"
  else
    die "extra CA path not found: $path"
  fi
done

# --- build ------------------------------------------------------------------------------------------------
log "step 2 of 3: building $tag from $base; versions (Dockerfile ARG defaults):"
grep -E '^ARG [A-Z_]+_(VERSION|UID)=' "$dockerfile" | sed 's/^ARG /    /' >&2
build=(docker build --network host --build-arg "BASE_IMAGE=$base" "${claude_args[@]}"
  --label "io.anyon.source=$source_hash" --tag "$tag")
if docker buildx version >/dev/null 2>&1; then
  build+=(--progress=plain)  # BuildKit: plain, line-by-line progress
fi
start=$SECONDS
"${build[@]}" "${docker_args[@]}" "$context"
log "built $tag in $((SECONDS - start)) s; size $(docker image inspect --format '{{.Size}}' "$tag" \
  | awk '{printf "%.0f MB", $1 / 1000000}')"

# --- versions inside the built image ------------------------------------------------------------------------
log "step 3 of 3: versions inside $tag:"
docker run --rm --network none "$tag" bash -c '
  echo "    claude-code $(claude --version)"
  echo "    node        $(node --version)"
  echo "    npm         $(npm --version)"
  echo "    git         $(git --version)"
  echo "    gh          $(gh --version | head -n1)"
  echo "    python      $(python3 --version)"
  echo "    pip         $(python3 -m pip --version)"
  echo "    user        $(id -un) uid=$(id -u) HOME=$HOME PWD=$PWD"'
