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

package apiserver

import (
	"testing"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"
	kubevirtclient "kubevirt.io/client-go/kubevirt"
)

// The request path's clients must not wait on client-go's default 5 QPS:
// every files request reads three objects, and a small download waited
// 200 ms per two of them once the burst was spent.
func TestRequestPathClientsAreNotThrottled(t *testing.T) {
	base := &rest.Config{Host: "https://127.0.0.1:1"}
	cfg := unthrottled(base)
	if base.QPS != 0 {
		t.Fatalf("unthrottled changed the caller's config: QPS %v", base.QPS)
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := kubevirtclient.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for name, rl := range map[string]flowcontrol.RateLimiter{
		"core":     kube.CoreV1().RESTClient().GetRateLimiter(),
		"kubevirt": kv.KubevirtV1().RESTClient().GetRateLimiter(),
	} {
		if rl != nil {
			t.Errorf("%s client has a client-side rate limit (%T at %v QPS)", name, rl, rl.QPS())
		}
	}

	// A limiter the config names on purpose is kept.
	own := flowcontrol.NewTokenBucketRateLimiter(100, 200)
	if got := unthrottled(&rest.Config{RateLimiter: own}).RateLimiter; got != own {
		t.Errorf("unthrottled dropped the config's own RateLimiter")
	}
}
