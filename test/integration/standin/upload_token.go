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

// The upload token: cdi-apiserver signs it, cdi-uploadproxy checks it.

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// tokenClaims are CDI's upload token claims: the registered JWT ones and
// its payload (operation, the PVC's name and namespace, the resource).
type tokenClaims struct {
	Issuer    string                      `json:"iss"`
	IssuedAt  int64                       `json:"iat"`
	NotBefore int64                       `json:"nbf"`
	Expiry    int64                       `json:"exp"`
	Operation string                      `json:"operation"`
	Name      string                      `json:"name"`
	Namespace string                      `json:"namespace"`
	Resource  metav1.GroupVersionResource `json:"resource"`
}

var (
	b64        = base64.RawURLEncoding
	jwtHeader  = b64.EncodeToString([]byte(`{"alg":"EdDSA","typ":"JWT"}`))
	pvcGVR     = metav1.GroupVersionResource{Version: "v1", Resource: "persistentvolumeclaims"}
	errBadSign = errors.New("bad token signature")
)

// signToken makes a compact JWT (header.claims.signature, base64url without
// padding) signed with Ed25519, where CDI uses RS256.
func (u *Uploads) signToken(namespace, pvc string, now time.Time) (string, error) {
	claims, err := json.Marshal(tokenClaims{
		Issuer: tokenIssuer, IssuedAt: now.Unix(), NotBefore: now.Unix(), Expiry: now.Add(tokenTTL).Unix(),
		Operation: "Upload", Name: pvc, Namespace: namespace, Resource: pvcGVR,
	})
	if err != nil {
		return "", err
	}
	signed := jwtHeader + "." + b64.EncodeToString(claims)
	return signed + "." + b64.EncodeToString(ed25519.Sign(u.signingKey, []byte(signed))), nil
}

// verifyToken checks the signature, issuer and validity window.
func (u *Uploads) verifyToken(token string, now time.Time) (*tokenClaims, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 || parts[0] != jwtHeader {
		return nil, errors.New("not an upload token")
	}
	sig, err := b64.DecodeString(parts[2])
	if err != nil || !ed25519.Verify(u.signingKey.Public().(ed25519.PublicKey), []byte(parts[0]+"."+parts[1]), sig) {
		return nil, errBadSign
	}
	raw, err := b64.DecodeString(parts[1])
	if err != nil {
		return nil, err
	}
	var c tokenClaims
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, err
	}
	switch {
	case c.Issuer != tokenIssuer:
		return nil, fmt.Errorf("token issued by %q", c.Issuer)
	case now.After(time.Unix(c.Expiry, 0).Add(tokenLeeway)):
		return nil, errors.New("token expired")
	case now.Add(tokenLeeway).Before(time.Unix(c.NotBefore, 0)):
		return nil, errors.New("token not valid yet")
	}
	return &c, nil
}
