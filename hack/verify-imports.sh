#!/usr/bin/env bash
# Checks the import rules of docs/architecture.md, so that the layers stay
# layers: apis ← registry ← subresource → transfer, no k8s.io/apiserver in the
# data plane (not even through a dependency), and nothing outside test/
# importing test/ (test files included).
set -o errexit -o nounset -o pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mod=github.com/novasphere/wukong
fail=0
bad() { echo "import rule broken: $*" >&2; fail=1; }

# package, then every import of it and of its tests, one line each.
imports=$(go list -f '{{$p := .ImportPath}}{{range .Imports}}{{$p}} {{.}}
{{end}}{{range .TestImports}}{{$p}} {{.}}
{{end}}{{range .XTestImports}}{{$p}} {{.}}
{{end}}' ./...)

# rule PKG-PREFIX FORBIDDEN-PREFIX WHY
rule() {
  local from=$1 to=$2 why=$3
  while read -r p i; do
    [ -n "$p" ] || continue
    case "$p" in "$mod/$from"*) ;; *) continue ;; esac
    case "$i" in "$to"*) bad "$p imports $i ($why)" ;; esac
  done <<<"$imports"
}

for top in pkg cmd hack; do
  rule "$top/" "$mod/test/" "only tests import test/"
done
for l in registry subresource transfer controller apiserver client cmd generated; do
  rule pkg/apis/ "$mod/pkg/$l" "the API types import nothing of ours but themselves"
done
for l in subresource transfer controller apiserver cmd; do
  rule pkg/registry/ "$mod/pkg/$l" "storage stays storage"
done
for l in registry subresource controller apiserver cmd; do
  rule pkg/transfer/ "$mod/pkg/$l" "the data plane knows nothing of requests or storage"
done
rule pkg/transfer/ "k8s.io/apiserver" "the data plane knows nothing of requests or storage"
for l in controller apiserver cmd; do
  rule pkg/subresource/ "$mod/pkg/$l" "handlers are wired by pkg/apiserver"
done
rule pkg/controller/ "$mod/pkg/subresource" "controllers do not serve requests"
# pkg/egress is a leaf every layer may use: the standard library only.
rule pkg/egress "$mod/" "pkg/egress is a leaf"
rule pkg/egress "k8s.io/" "pkg/egress is a leaf"

# Not even through a dependency: the data plane must build without the
# API server library.
for p in $(go list ./pkg/transfer/...); do
  if go list -deps "$p" | grep -q '^k8s.io/apiserver/'; then
    bad "$p depends on k8s.io/apiserver"
  fi
done
exit $fail
