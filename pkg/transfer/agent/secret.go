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

package agent

// The Secret that holds a Wukong's agent credentials, as the VM controller
// (pkg/controller/virtualmachine) writes it and wukong-apiserver's dialer
// reads it: Opaque, controlled by the Wukong, in its namespace. The same
// certificate is the agent's serving certificate and the CA its client
// pins.
const (
	// SecretKeyToken is the bearer token: 32 random bytes, base64url.
	SecretKeyToken = "token"
	// SecretKeyTLSCert is the agent's self-signed certificate, PEM, for
	// ServerName; the client's only trusted CA.
	SecretKeyTLSCert = "tls.crt"
	// SecretKeyTLSKey is its ECDSA P-256 private key, PEM.
	SecretKeyTLSKey = "tls.key"
)

// SecretName is the name of wukong's agent Secret.
func SecretName(wukong string) string { return wukong + "-agent" }

// ServerName is the DNS name the agent's certificate carries and the client
// expects: stable, unlike the VMI's address, which changes with each start.
func ServerName(namespace, wukong string) string {
	return "wukong-agent." + namespace + "." + wukong
}
