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

// How the controller and wukong-apiserver agree on an agent's credentials
// (docs/agent.md, "Token and certificate").

// Keys of the Secret SecretName(wukong), which the Wukong owns.
const (
	// TokenKey holds the bearer token.
	TokenKey = "token"
	// CertKey holds the agent's self-signed certificate, PEM: what the
	// agent serves and the only CA its client trusts.
	CertKey = "tls.crt"
	// KeyKey holds the certificate's private key, PEM (the guest's only).
	KeyKey = "tls.key"
)

// DefaultPort is where the agent listens when httpConfig.port is not set.
const DefaultPort = 8080

// SecretName is the Secret holding the agent's token and certificate.
func SecretName(wukong string) string { return wukong + "-agent" }

// ServerName is the DNS name the agent's certificate carries: not the VMI's
// address, which changes with every start.
func ServerName(namespace, wukong string) string {
	return "wukong-agent." + namespace + "." + wukong
}
