/*
Copyright The Wukong Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

// Package framework runs a real Kubernetes control plane on loopback for the
// integration tests and for `make up`: etcd, kube-apiserver and
// wukong-apiserver as subprocesses, wukong-apiserver registered behind a real
// APIService, users authenticated by client certificates and authorised by
// RBAC, and the real kubectl. etcd runs as the shipped StatefulSet does: TLS
// and client certificates only, kube-apiserver and wukong-apiserver each with
// its own. There is no controller-manager and no kubelet: nothing reconciles,
// no pod runs.
//
// The core (Start, ControlPlane, CreateUser, Kubectl) knows nothing about the
// testing package, so test/cmd/local-up (`make up`) runs the same stack;
// RunTestMain, StartForTest, CreateTestUser and RunKubectl are thin helpers
// for tests on top of it.
//
// Startup costs seconds, so a test package normally starts one control plane
// in TestMain and shares it, each test isolating itself by namespace and user:
//
//	var cp *framework.ControlPlane
//
//	func TestMain(m *testing.M) {
//		os.Exit(framework.RunTestMain(m, framework.Options{}, &cp))
//	}
//
// What wukong-apiserver expects to find at startup (KubeVirt and CDI CRDs)
// goes in Options.BeforeWukongAPIServer. RegisterAPIService puts another
// aggregated API server (a stand-in listening on loopback) behind an
// APIService, as wukong-apiserver is.
//
// Environment variables:
//
//	WUKONG_APISERVER_BIN   run this wukong-apiserver instead of building ./cmd/wukong-apiserver
//	WUKONG_KEEP_WORKDIR=1  keep the temporary work dir (certificates, kubeconfigs, etcd data, logs) after Stop
package framework
