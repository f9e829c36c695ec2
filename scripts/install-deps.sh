#!/bin/sh
# Install the Debian packages TVM needs, only those that are missing.
# Usage: scripts/install-deps.sh [extra packages...]   (as root; a no-op when all present)
set -eu

# command-or-file  package
NEEDED="
bwrap bubblewrap
mmdebstrap mmdebstrap
hardlink util-linux
runsc runsc
qemu-system-x86_64 qemu-system-x86
mkfs.ext4 e2fsprogs
cpio cpio
curl curl
"

missing=""
echo "$NEEDED" | while read -r cmd pkg; do
    [ -n "$cmd" ] || continue
    command -v "$cmd" >/dev/null 2>&1 || echo "$pkg"
done > /tmp/tvm-missing.$$
missing=$(sort -u /tmp/tvm-missing.$$ | tr '\n' ' ')
rm -f /tmp/tvm-missing.$$
python3 -c 'import venv, ensurepip' 2>/dev/null || missing="$missing python3-venv"
[ -e /usr/share/keyrings/debian-archive-keyring.gpg ] || missing="$missing debian-archive-keyring"
missing="$missing $*"
missing=$(echo "$missing" | xargs -n1 2>/dev/null | sort -u | xargs)

if [ -z "$missing" ]; then
    echo "system packages: all present"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "missing system packages: $missing" >&2
    echo "run as root, or: sudo apt-get install -y $missing" >&2
    exit 1
fi
echo "installing system packages: $missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing
