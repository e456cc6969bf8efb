#!/usr/bin/env bash
# `make up` / `make down`: a local Wukong control plane in the background
# (etcd, kube-apiserver, wukong-apiserver behind an APIService), the same stack
# the integration tests run. `start` waits until it is ready and shows kubectl
# working against the Wukong API; `stop` stops only what `start` started.
set -o errexit -o nounset -o pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$root"
out=_output/local-up
pidfile=$out/local-up.pid
export KUBECONFIG=$root/$out/kubeconfig
kubectl=$root/_output/bin/kubectl

start() {
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "already running (pid $(cat "$pidfile")); 'make down' stops it"
    exit 0
  fi
  # The demo VM is an OpenSSH sshd.
  hack/ensure-test-deps.sh
  mkdir -p "$out"
  go build -o _output/bin/local-up ./test/cmd/local-up
  : >"$out/local-up.log"
  WUKONG_APISERVER_BIN=$root/_output/bin/wukong-apiserver \
    setsid nohup _output/bin/local-up >"$out/local-up.log" 2>&1 </dev/null &
  local pid=$!
  for _ in $(seq 1 300); do
    if grep -q '^Wukong is up' "$out/local-up.log"; then break; fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "local-up failed:"; tail -30 "$out/local-up.log"; exit 1
    fi
    sleep 1
  done
  grep -q '^Wukong is up' "$out/local-up.log" || { echo "local-up did not become ready:"; tail -30 "$out/local-up.log"; exit 1; }
  sed -n '/^Wukong is up/,$p' "$out/local-up.log"

  echo "--- the Wukong API through kube-apiserver, and a file into and out of the demo VM:"
  local files=/apis/vm.novasphere.dev/v1alpha1/namespaces/default/wukongs/demo/files
  (set -x
    "$kubectl" api-resources --api-group=vm.novasphere.dev
    "$kubectl" get wukongs
    "$kubectl" replace --raw "$files?path=/tmp/README.md" -f README.md >/dev/null
    "$kubectl" get --raw "$files?path=/tmp/README.md" >"$out/README.copy"
    cmp README.md "$out/README.copy"
    "$kubectl" get --raw "$files?path=/tmp"
    "$kubectl" get wukongfiletransfers
  )
  echo "--- the file went in and came back byte-identical"
  echo "--- the same with the kubectl wukong plugin (on PATH from _output/bin):"
  rm -rf "$out/plugin-copy"
  (export PATH=$root/_output/bin:$PATH; set -x
    kubectl wukong cp README.md demo:/tmp/plugin/README.md --create-parents
    kubectl wukong cp demo:/tmp/plugin "$out/plugin-copy"
    cmp README.md "$out/plugin-copy/README.md"
    kubectl wukong ls demo:/tmp/plugin
    kubectl wukong transfers demo
  )
  echo "--- in and back out as a directory, byte-identical"
  echo "--- try it: export KUBECONFIG=$KUBECONFIG PATH=$root/_output/bin:\$PATH; kubectl wukong --help"
}

stop() {
  if [ ! -f "$pidfile" ]; then echo "not running"; return 0; fi
  local pid; pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  echo "stopped (pid $pid)"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
