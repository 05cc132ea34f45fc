#!/usr/bin/env bash
# Debian packages Beemesh needs to build its venv and run its tests; installs only what is missing.
# Why each: gcc/python3-dev/libgmp-dev build fastecdsa (py-libp2p pins a version with no Linux
# wheel); python3-venv makes .venv; iproute2 is used by the network tests.
set -euo pipefail
pkgs=(python3 python3-venv python3-dev gcc libgmp-dev make iproute2 procps)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing Debian packages: ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
