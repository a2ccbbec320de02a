#!/usr/bin/env bash
# Build chainproof's component image (stage `runtime`) with podman, here or in CI.
#
#   scripts/build_image.sh [TAG]          # default TAG localhost/chainproof:ci
#
# Production builds keep the Dockerfile's digest-pinned python:3.11-slim. Where Docker Hub is
# unreachable (this machine, CI), set CHAINPROOF_LOCAL_BASE=1 (the default when no registry base
# can be pulled): a Debian bookworm base is bootstrapped locally with debootstrap and imported as
# localhost/base:py311, then passed as the build argument PYTHON_IMAGE.
# The machine's CA bundle and /etc/pip.conf are mounted at build time only (never in a layer).
# Prints the build time, the image size and, on its last line, the image digest.
set -euo pipefail
cd "$(dirname "$0")/.."

TAG=${1:-localhost/chainproof:ci}
TARGET=${CHAINPROOF_IMAGE_TARGET:-runtime}
BASE=${CHAINPROOF_BASE_IMAGE:-localhost/base:py311}
RUNTIME_FLAGS=(--runtime runc)
ULIMITS=(--ulimit nofile=1024:4096 --ulimit nproc=1024:4096)

need=()
command -v podman >/dev/null 2>&1 || need+=(podman)
command -v runc >/dev/null 2>&1 || need+=(runc)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "build_image.sh: missing ${need[*]} (install them, or run as root with apt-get)" >&2
    exit 3
  fi
fi

start=$(date +%s)
if ! podman image exists "$BASE"; then
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root" >/dev/null
  tar -C "$root" -c . | podman import - "$BASE" >/dev/null
  rm -rf "$root"
  echo "base $BASE bootstrapped in $(( $(date +%s) - start ))s"
fi

mounts=()
[ -f /etc/ssl/certs/ca-certificates.crt ] && mounts+=(-v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
[ -f /etc/pip.conf ] && mounts+=(-v /etc/pip.conf:/etc/pip.conf:ro)

build_start=$(date +%s)
podman build "${RUNTIME_FLAGS[@]}" "${ULIMITS[@]}" --network host "${mounts[@]}" \
  --build-arg PYTHON_IMAGE="$BASE" --target "$TARGET" \
  -f image/Dockerfile -t "$TAG" . >&2
echo "image $TAG built in $(( $(date +%s) - build_start ))s (total $(( $(date +%s) - start ))s)"
echo "image size $(podman image inspect --format '{{.Size}}' "$TAG") bytes"
podman image inspect --format '{{.Digest}}' "$TAG"
