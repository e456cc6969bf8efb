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

package server

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/novasphere/wukong/pkg/apiserver"
)

func TestPushCIDRFlags(t *testing.T) {
	o := NewWukongOptions()
	o.PushAllowedCIDRs = []string{"10.96.0.10", "not-a-cidr"}
	errs := o.Validate()
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "--push-allowed-cidrs") {
		t.Fatalf("errors %v, want one naming --push-allowed-cidrs", errs)
	}

	o.PushAllowedCIDRs = []string{"10.96.0.10"}
	o.PushDeniedCIDRs = []string{"203.0.113.0/24"}
	if errs := o.Validate(); len(errs) != 0 {
		t.Fatal(errs)
	}
	var c apiserver.ExtraConfig
	if err := o.ApplyTo(&c); err != nil {
		t.Fatal(err)
	}
	for addr, allowed := range map[string]bool{"10.96.0.10": true, "10.96.0.11": false, "203.0.113.5": false, "198.51.100.1": true, "169.254.169.254": false} {
		if err := c.PushEgress.Check(netip.MustParseAddr(addr)); (err == nil) != allowed {
			t.Errorf("%s: allowed %v, want %v", addr, err == nil, allowed)
		}
	}
}
