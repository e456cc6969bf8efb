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

package standin

import (
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"testing"
	"time"
)

// The token without a control plane: what the integration test cannot
// reach (an expired token, a forged one).

func TestUploadToken(t *testing.T) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u := &Uploads{signingKey: key}
	now := time.Now()
	tok, err := u.signToken("ns1", "disk", now)
	if err != nil {
		t.Fatal(err)
	}
	if !authHeaderMatcher.MatchString("Bearer " + tok) {
		t.Fatalf("token %q is not in CDI's bearer charset", tok)
	}
	c, err := u.verifyToken(tok, now.Add(time.Minute))
	if err != nil || c.Namespace != "ns1" || c.Name != "disk" || c.Operation != "Upload" || c.Resource.Resource != "persistentvolumeclaims" {
		t.Fatalf("verify: %+v, %v", c, err)
	}
	if _, err := u.verifyToken(tok, now.Add(tokenTTL+tokenLeeway+time.Second)); err == nil {
		t.Error("an expired token was accepted")
	}
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	if _, err := (&Uploads{signingKey: other}).verifyToken(tok, now); err == nil {
		t.Error("a token signed by another key was accepted")
	}
	parts := strings.Split(tok, ".")
	swapped, _ := u.signToken("ns2", "disk", now)
	if _, err := u.verifyToken(parts[0]+"."+strings.Split(swapped, ".")[1]+"."+parts[2], now); err == nil {
		t.Error("claims swapped under a signature were accepted")
	}
}
