#!/usr/bin/env bash
# Debian packages Beemesh needs to build its venv, run the demo and run every test; installs
# only what is missing (a second run takes about a second). Why each group:
#   python3 python3-venv python3-dev gcc libgmp-dev   .venv; fastecdsa (pinned by py-libp2p,
#                                                       no Linux wheel) compiles on install
#   podman runc catatonit conmon containernetworking-plugins iptables   the container runtime
#       (runc: crun fails on cgroup v1 hybrid hosts; catatonit: podman's pod pause image)
#   busybox-static          the workload image the demo and tests build with `podman import`
#   etcd-server etcd-client the real Raft workload of the volume tests (an image built from them)
#   iproute2 util-linux     network namespaces: one per demo/test machine
#   gcc-aarch64-linux-gnu libc6-dev debootstrap qemu-user-static   the aarch64 .pyz and its
#                           ARM proof (packaging/ci-setup.sh also registers binfmt for qemu)
set -euo pipefail
pkgs=(python3 python3-venv python3-dev gcc libc6-dev libgmp-dev make git ca-certificates procps
      podman runc catatonit conmon containernetworking-plugins iptables busybox-static
      iproute2 util-linux gcc-aarch64-linux-gnu debootstrap qemu-user-static
      etcd-server etcd-client)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi
$SUDO sh "$(dirname "$0")/ci-setup.sh"
