#!/usr/bin/env bash
# Release builds: static, stripped, reproducible binaries carrying their
# version, and wukong-apiserver's multi-arch OCI image (hack/image).
#
#   hack/build-release.sh image     # _output/image (OCI layout); IMAGE=ref pushes too
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
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo v0.0.0-dev)}
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
  args=()
  for p in ${IMAGE_PLATFORMS:-linux/amd64 linux/arm64}; do
    out="$REL/${p%/*}-${p#*/}/wukong-apiserver"
    echo ">> wukong-apiserver $VERSION for $p" >&2
    binary "${p%/*}" "${p#*/}" wukong-apiserver "$out"
    args+=(--binary "$p=$out")
  done
  [ -z "${IMAGE:-}" ] || args+=(--push "$IMAGE")
  [ "${IMAGE_INSECURE:-}" != 1 ] || args+=(--insecure)
  $GO run ./hack/image "${args[@]}" --oci-layout "${IMAGE_LAYOUT:-$root/_output/image}" --version "$VERSION" --revision "$COMMIT"
  ;;
*) echo "usage: $0 image | binary OS ARCH NAME OUT" >&2; exit 2 ;;
esac
