#!/usr/bin/env bash
# Regenerates everything generated in this repository: deepcopy, defaults and
# conversions beside the API types (zz_generated.*), and OpenAPI definitions,
# the clientset, listers, informers and apply configurations in pkg/generated.
# The generators are pinned as `tool` directives in go.mod, so this runs offline.
set -o errexit -o nounset -o pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$root"
mod=github.com/novasphere/wukong
header=hack/boilerplate.go.txt
apis=(./pkg/apis/vm ./pkg/apis/vm/v1alpha1)
gen=pkg/generated
report=$(mktemp); trap 'rm -f "$report"' EXIT

# Remove what the generators wrote last time, so renamed types leave nothing behind.
find pkg/apis -name 'zz_generated.*.go' -delete
rm -rf "$gen/clientset" "$gen/listers" "$gen/informers" "$gen/applyconfiguration" "$gen/openapi"

go tool deepcopy-gen --go-header-file "$header" --output-file zz_generated.deepcopy.go "${apis[@]}"
go tool defaulter-gen --go-header-file "$header" --output-file zz_generated.defaults.go ./pkg/apis/vm/v1alpha1
go tool conversion-gen --go-header-file "$header" --output-file zz_generated.conversion.go ./pkg/apis/vm/v1alpha1

go tool openapi-gen --go-header-file "$header" \
  --output-file zz_generated.openapi.go --output-dir "$gen/openapi" --output-pkg "$mod/$gen/openapi" \
  --output-model-name-file zz_generated.model_name.go --report-filename "$report" \
  k8s.io/apimachinery/pkg/apis/meta/v1 k8s.io/apimachinery/pkg/runtime \
  k8s.io/apimachinery/pkg/version k8s.io/apimachinery/pkg/api/resource \
  ./pkg/apis/vm/v1alpha1

go tool applyconfiguration-gen --go-header-file "$header" \
  --output-dir "$gen/applyconfiguration" --output-pkg "$mod/$gen/applyconfiguration" \
  --openapi-schema <(go run ./hack/models-schema) \
  ./pkg/apis/vm/v1alpha1

go tool client-gen --go-header-file "$header" \
  --output-dir "$gen/clientset" --output-pkg "$mod/$gen/clientset" \
  --clientset-name versioned --input-base "$mod/pkg/apis" --input vm/v1alpha1 \
  --apply-configuration-package "$mod/$gen/applyconfiguration"

go tool lister-gen --go-header-file "$header" \
  --output-dir "$gen/listers" --output-pkg "$mod/$gen/listers" ./pkg/apis/vm/v1alpha1

go tool informer-gen --go-header-file "$header" \
  --output-dir "$gen/informers" --output-pkg "$mod/$gen/informers" \
  --versioned-clientset-package "$mod/$gen/clientset/versioned" \
  --listers-package "$mod/$gen/listers" ./pkg/apis/vm/v1alpha1

gofmt -s -w pkg/apis "$gen"
