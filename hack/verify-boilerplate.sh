#!/usr/bin/env bash
# Every hand-written Go file starts with the licence header the code
# generators put on theirs (hack/boilerplate.go.txt), so that the rule is
# "every file", never "some". With --fix, adds it where it is missing.
set -o errexit -o nounset -o pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
header=hack/boilerplate.go.txt
n=$(wc -l <"$header")
fix=${1:-}
missing=()
while IFS= read -r f; do
  case "$f" in */zz_generated.*|pkg/generated/*) continue ;; esac
  # gofmt keeps a //go:build line and its blank line above everything.
  skip=0
  [[ $(sed -n 1p "$f") == //go:build* ]] && skip=2
  if ! sed -n "$((skip + 1)),$((skip + n))p" "$f" | cmp -s - "$header"; then
    if [ "$fix" = --fix ]; then
      { cat "$header"; cat "$f"; } >"$f.tmp" && mv "$f.tmp" "$f"
    else
      missing+=("$f")
    fi
  fi
done < <(git ls-files --cached --others --exclude-standard '*.go')
if [ ${#missing[@]} -gt 0 ]; then
  echo "files without the licence header of $header (run hack/verify-boilerplate.sh --fix):" >&2
  printf '  %s\n' "${missing[@]}" >&2
  exit 1
fi
