#!/usr/bin/env bash
# Installs, through apt, the system packages the tests, the benchmarks and
# `make up` run and a fresh Debian machine lacks. The one list of them, used
# by `make test`, `make test-integration`, `make bench`, `make up` and .ci/run.
# Installs nothing when everything is there.
set -o errexit -o nounset -o pipefail

need=()
# OpenSSH's sshd plays the VM guests (and `make up`'s demo VM).
[ -x /usr/sbin/sshd ] || command -v sshd >/dev/null 2>&1 || need+=(openssh-server)
# scp is the benchmarks' baseline and is checked against the guests.
command -v scp >/dev/null 2>&1 || need+=(openssh-client)
# qemu-img checks the qcow2 images that pushes write.
command -v qemu-img >/dev/null 2>&1 || need+=(qemu-utils)
# unshare and mount (util-linux) and chroot (coreutils) let the deployment
# rehearsal run the image's binary in its own root, as a kubelet would.
command -v unshare >/dev/null 2>&1 && command -v mount >/dev/null 2>&1 || need+=(util-linux mount)
command -v chroot >/dev/null 2>&1 || need+=(coreutils)
# Callers may name more (.ci/run adds make).
for p in "$@"; do need+=("$p"); done
[ ${#need[@]} -gt 0 ] || exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "missing: ${need[*]}; install them (this script knows only apt)" >&2
  exit 1
fi
sudo=; [ "$(id -u)" -eq 0 ] || sudo=sudo
export DEBIAN_FRONTEND=noninteractive
echo ">> installing ${need[*]}" >&2
# Without a fresh package index first: a warm one spares the network.
$sudo apt-get install -y -qq "${need[@]}" >/dev/null ||
  { $sudo apt-get update -qq && $sudo apt-get install -y -qq "${need[@]}" >/dev/null; }
