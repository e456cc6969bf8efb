#!/usr/bin/env bash
# Fails when generated code differs from what hack/update-codegen.sh writes
# from the current sources. Runs the generators on a copy of the tree.
set -o errexit -o nounset -o pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cd "$root"
# Copy the module (without build output) and regenerate there.
tar --exclude=./_output --exclude=./.git -cf - . | tar -C "$tmp" -xf -
(cd "$tmp" && hack/update-codegen.sh >/dev/null)
if diff -Naur --exclude='*.txt' "$root/pkg" "$tmp/pkg"; then
  echo "generated code is up to date"
else
  echo "generated code is out of date: run hack/update-codegen.sh" >&2
  exit 1
fi
