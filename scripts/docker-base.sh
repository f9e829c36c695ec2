#!/bin/sh
# A Debian bookworm base image made locally from Debian packages, for hosts that
# cannot pull from a container registry: mmdebstrap (minbase) -> docker import.
# Equivalent to debian:bookworm-slim for the Dockerfile's needs.
#
#   scripts/docker-base.sh [TAG]          (default tvm/base:bookworm)
#
# Skips the work when TAG already exists (DOCKER_BASE_FORCE=1 rebuilds). Needs root
# (or mmdebstrap's unshare mode) and a running docker daemon.
set -eu
tag=${1:-tvm/base:bookworm}
docker=${DOCKER:-docker}
if [ -z "${DOCKER_BASE_FORCE:-}" ] && $docker image inspect "$tag" >/dev/null 2>&1; then
    echo "base image $tag exists"
    exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mmdebstrap --variant=minbase --quiet \
    --aptopt='APT::Install-Recommends "false"' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
    bookworm "$work/base.tar"
$docker import \
    --change 'CMD ["bash"]' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "$work/base.tar" "$tag"
echo "base image $tag: $($docker image inspect --format '{{.Size}}' "$tag") bytes"
