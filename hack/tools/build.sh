#!/usr/bin/env bash
# Builds the control-plane binaries the tests and `make up` run (etcd, kube-apiserver,
# kubectl, versitygw for S3 and the distribution registry for OCI) from the Go module proxy into BIN_DIR (default _output/bin). Rebuilds only
# when this module's go.sum changed, so a warm run costs nothing.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin=${BIN_DIR:-$here/../../_output/bin}
mkdir -p "$bin"
# A real S3 server (versitygw) from its own module, for the S3 import tests.
s3stamp="$bin/.s3-$(cat "$here/s3/go.mod" "$here/s3/go.sum" | sha256sum | cut -c1-16)"
if [ ! -f "$s3stamp" ] || [ ! -x "$bin/versitygw" ]; then
  echo ">> building versitygw (S3) into $bin (first build takes ~3 minutes)" >&2
  (cd "$here/s3" && go build -o "$bin/versitygw" github.com/versity/versitygw/cmd/versitygw)
  rm -f "$bin"/.s3-*
  touch "$s3stamp"
fi
# A real OCI registry (CNCF distribution), for the export push tests.
regstamp="$bin/.registry-$(cat "$here/registry/go.mod" "$here/registry/go.sum" | sha256sum | cut -c1-16)"
if [ ! -f "$regstamp" ] || [ ! -x "$bin/registry" ]; then
  echo ">> building the distribution registry (OCI) into $bin (first build takes ~2 minutes)" >&2
  (cd "$here/registry" && go build -o "$bin/registry" github.com/distribution/distribution/v3/cmd/registry)
  rm -f "$bin"/.registry-*
  touch "$regstamp"
fi
stamp="$bin/.tools-$(cat "$here/go.mod" "$here/go.sum" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ -x "$bin/kube-apiserver" ] && [ -x "$bin/etcd" ] && [ -x "$bin/kubectl" ]; then
  exit 0
fi
kver=v1.37.0
cd "$here"
ld="-X k8s.io/component-base/version.gitVersion=$kver -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37"
ld="$ld -X k8s.io/client-go/pkg/version.gitVersion=$kver -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=37"
ld="$ld -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/component-base/version.buildDate=2026-01-01T00:00:00Z"
echo ">> building etcd, kube-apiserver, kubectl into $bin (first build takes ~10 minutes)" >&2
go build -o "$bin/etcd" go.etcd.io/etcd/server/v3
go build -ldflags "$ld" -o "$bin/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
go build -ldflags "$ld" -o "$bin/kubectl" k8s.io/kubernetes/cmd/kubectl
rm -f "$bin"/.tools-*
touch "$stamp"
