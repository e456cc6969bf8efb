#!/usr/bin/env bash
# Release builds: static, stripped, reproducible binaries carrying their
# version, and wukong-apiserver's multi-arch OCI image (hack/image), which
# carries wukong-agent too (the in-guest agent and the pvc helper pod's),
# and the wukong-agent-disk containerDisk that VMs of method http install
# the agent from (an ISO labelled WUKONGAGENT with both agents).
#
#   hack/build-release.sh image     # _output/image (OCI layout); IMAGE=ref pushes too;
#                                   # _output/agent-disk; AGENT_DISK_IMAGE=ref pushes it
#   hack/build-release.sh plugin    # _output/release/plugin: archives, SHA256SUMS, krew manifest
#   hack/build-release.sh binary OS ARCH NAME OUT
#
# Reproducible: -trimpath and -buildvcs=false keep paths and the work tree's
# state out of the binary, the version comes from git, and every time in the
# image is the commit's (SOURCE_DATE_EPOCH). Same commit, same toolchain →
# same bytes and the same image digest.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
GO=${GO:-go}
# A tag when there is one; else a semver pre-release naming the commit, as
# krew wants a semantic version.
if [ -z "${VERSION:-}" ]; then
  VERSION=$(git describe --tags --match 'v[0-9]*' --dirty 2>/dev/null) ||
    VERSION="v0.0.0-$(git rev-parse --short=12 HEAD 2>/dev/null || echo dev)$(git diff --quiet HEAD 2>/dev/null || echo -dirty)"
fi
COMMIT=${COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
BUILD_DATE=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
pkg=github.com/novasphere/wukong/pkg/version
LDFLAGS="-s -w -buildid= -X $pkg.version=$VERSION -X $pkg.commit=$COMMIT -X $pkg.buildDate=$BUILD_DATE"
REL=${REL_DIR:-$root/_output/release}

binary() { # os arch name out
  CGO_ENABLED=0 GOOS=$1 GOARCH=$2 $GO build -trimpath -buildvcs=false -ldflags "$LDFLAGS" -o "$4" "./cmd/$3"
}

case ${1:-} in
binary) shift; binary "$@" ;;
image)
  args=() disk=()
  for p in ${IMAGE_PLATFORMS:-linux/amd64 linux/arm64}; do
    out="$REL/${p%/*}-${p#*/}"
    for name in wukong-apiserver wukong-agent; do
      echo ">> $name $VERSION for $p" >&2
      binary "${p%/*}" "${p#*/}" "$name" "$out/$name"
    done
    args+=(--binary "$p=$out/wukong-apiserver" --agent "$p=$out/wukong-agent")
    disk+=(--agent "$p=$out/wukong-agent")
  done
  # The agent disk first; stdout is the server image's digest alone.
  [ -z "${AGENT_DISK_IMAGE:-}" ] || disk+=(--push "$AGENT_DISK_IMAGE")
  [ "${IMAGE_INSECURE:-}" != 1 ] || disk+=(--insecure)
  echo ">> wukong-agent-disk $VERSION" >&2
  d=$($GO run ./hack/image --agent-disk "${disk[@]}" --oci-layout "${AGENT_DISK_LAYOUT:-$root/_output/agent-disk}" --version "$VERSION" --revision "$COMMIT")
  echo ">> wukong-agent-disk $d" >&2
  [ -z "${IMAGE:-}" ] || args+=(--push "$IMAGE")
  [ "${IMAGE_INSECURE:-}" != 1 ] || args+=(--insecure)
  $GO run ./hack/image "${args[@]}" --oci-layout "${IMAGE_LAYOUT:-$root/_output/image}" --version "$VERSION" --revision "$COMMIT"
  ;;
plugin)
  # Archives of kubectl-wukong for each platform, with the LICENSE (krew
  # installs it beside the binary) and kubectl's completion hook; times,
  # owners and order fixed so that the sums repeat.
  out=$REL/plugin
  rm -rf "$out" && mkdir -p "$out"
  url=${RELEASE_URL:-https://github.com/novasphere/wukong/releases/download/$VERSION}
  platforms=()
  for p in ${PLUGIN_PLATFORMS:-linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64}; do
    os=${p%/*} arch=${p#*/} exe=kubectl-wukong
    [ "$os" != windows ] || exe=kubectl-wukong.exe
    echo ">> kubectl-wukong $VERSION for $p" >&2
    stage="$out/.stage/$os-$arch"
    mkdir -p "$stage"
    binary "$os" "$arch" kubectl-wukong "$stage/$exe"
    cp LICENSE "$stage/LICENSE"
    files=("$exe" LICENSE)
    if [ "$os" != windows ]; then
      cp hack/kubectl_complete-wukong "$stage/kubectl_complete-wukong"
      files+=(kubectl_complete-wukong)
    fi
    archive="kubectl-wukong_${VERSION}_${os}_${arch}.tar.gz"
    tar -C "$stage" --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
      -cf - "${files[@]}" | gzip -n -9 >"$out/$archive"
    platforms+=("$os $arch $exe $archive $(sha256sum "$out/$archive" | cut -d' ' -f1)")
  done
  rm -rf "$out/.stage"
  (cd "$out" && sha256sum ./*.tar.gz | sed 's# \./# #' >SHA256SUMS)
  {
    cat <<YAML
apiVersion: krew.googlecontainertools.github.com/v1alpha2
kind: Plugin
metadata:
  name: wukong
spec:
  version: $VERSION
  homepage: https://github.com/novasphere/wukong
  shortDescription: Copy files in and out of KubeVirt VMs through the Kubernetes API
  description: |
    kubectl wukong moves files and disks in and out of KubeVirt virtual
    machines declared as Wukongs (vm.novasphere.dev), through kube-apiserver
    and its RBAC, with nothing but kubectl's credentials: cp (with ranges,
    tar and resumable chunked transfers), ls, rm, disk export and upload, and
    the transfer records.
  caveats: |
    The cluster needs wukong-apiserver installed (see the homepage).
  platforms:
YAML
    for line in "${platforms[@]}"; do
      read -r os arch exe archive sum <<<"$line"
      cat <<YAML
  - selector:
      matchLabels:
        os: $os
        arch: $arch
    uri: $url/$archive
    sha256: $sum
    bin: $exe
    files:
    - from: $exe
      to: .
    - from: LICENSE
      to: .
YAML
    done
  } >"$out/wukong.yaml"
  echo "$out"
  ;;
*) echo "usage: $0 image | plugin | binary OS ARCH NAME OUT" >&2; exit 2 ;;
esac
