#!/usr/bin/env bash
# Builds krew (as the kubectl plugin kubectl-krew) and validate-krew-manifest
# from this module into BIN_DIR (default _output/bin), for the release test
# of the krew manifest. Apart from hack/tools/build.sh so that changing one
# never rebuilds the other's binaries. A no-op when its stamp is current.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin=${BIN_DIR:-$here/../../../_output/bin}
mkdir -p "$bin"
stamp="$bin/.krew-$(cat "$here/go.mod" "$here/go.sum" | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ -x "$bin/kubectl-krew" ] && [ -x "$bin/validate-krew-manifest" ]; then
  exit 0
fi
echo ">> building krew and validate-krew-manifest into $bin (first build takes ~1 minute)" >&2
cd "$here"
go build -o "$bin/kubectl-krew" sigs.k8s.io/krew/cmd/krew
go build -o "$bin/validate-krew-manifest" sigs.k8s.io/krew/cmd/validate-krew-manifest
rm -f "$bin"/.krew-*
touch "$stamp"
