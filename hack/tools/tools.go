//go:build tools

// Package tools pins the control-plane binaries the integration tests run:
// etcd, kube-apiserver and kubectl, built from the Go module proxy.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
