#!/bin/sh
# Machine setup for building and testing the .pyz files (packaging/README.md).
# Runs as root on Debian 12 (bookworm); idempotent: a second run installs nothing and
# takes about a second. Called by .ci/run before `make pyz`.
#
#   Debian packages   what for
#   python3 python3-venv            the build tools venv (CPython 3.11 = the target Python)
#   gcc libc6-dev libgmp-dev python3-dev   compile fastecdsa for x86_64
#   gcc-aarch64-linux-gnu           cross compile fastecdsa for aarch64 (sysroot: the arm64
#                                   userland that debootstrap unpacks under .cache/pyz)
#   debootstrap                     that arm64 userland (Debian mirror only)
#   qemu-user-static                run the arm64 userland's python3 (complete-platform JSON,
#                                   ARM tests)
#   make git                        `make pyz`; SOURCE_DATE_EPOCH and the file list from git
set -eu

PACKAGES="python3 python3-venv python3-dev gcc libc6-dev libgmp-dev gcc-aarch64-linux-gnu
debootstrap qemu-user-static make git ca-certificates"

if [ "$(id -u)" -ne 0 ]; then
    echo "ci-setup.sh: error: run as root (it installs Debian packages)" >&2
    exit 1
fi

missing=""
for pkg in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $pkg"
    fi
done
if [ -n "$missing" ]; then
    echo "ci-setup.sh: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# Let the kernel start arm64 binaries through qemu (binfmt_misc), so that an arm64 process
# can exec another one: pex re-executes its venv's python, the agent spawns helpers. Only the
# ARM tests need it (the build runs no arm64 code besides the explicit qemu wrapper). With
# the F flag the kernel keeps qemu open, so it works for any root; the tests point
# QEMU_LD_PREFIX at the userland.
BINFMT=/proc/sys/fs/binfmt_misc
if [ ! -e "$BINFMT/register" ]; then
    mount -t binfmt_misc binfmt_misc "$BINFMT" 2>/dev/null || true
fi
if [ ! -e "$BINFMT/qemu-aarch64" ] && [ -w "$BINFMT/register" ]; then
    cat /usr/lib/binfmt.d/qemu-aarch64.conf >"$BINFMT/register" || true
fi
if [ -e "$BINFMT/qemu-aarch64" ]; then
    echo "ci-setup.sh: ready (binfmt_misc: qemu-aarch64 $(head -n1 "$BINFMT/qemu-aarch64"))"
else
    echo "ci-setup.sh: ready, but could not register qemu-aarch64 in binfmt_misc:" \
        "the ARM tests (tests/packaging, slow) will fail" >&2
fi
