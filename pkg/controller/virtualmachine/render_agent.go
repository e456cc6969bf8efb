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

package virtualmachine

import (
	"crypto/sha256"
	"encoding/hex"

	corev1 "k8s.io/api/core/v1"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/novasphere/wukong/pkg/transfer/agent"
)

// AnnotationAgentCertificate, on a VM's template, names (by digest) the
// agent certificate its user data was rendered with: a renewed one renders
// the user data again.
const AnnotationAgentCertificate = "vm.novasphere.dev/agent-certificate"

// AgentInstall is what installing wukong-agent in a guest takes.
type AgentInstall struct {
	// Secret is the Wukong's agent Secret (token, certificate, key).
	Secret *corev1.Secret
	// DiskImage is the wukong-agent containerDisk.
	DiskImage string
}

// agentInstall is the install of the agent Secret s; nil when s is.
func (c *Controller) agentInstall(s *corev1.Secret) *AgentInstall {
	if s == nil {
		return nil
	}
	return &AgentInstall{Secret: s, DiskImage: c.AgentDiskImage}
}

// agentFingerprint names s's certificate; "" for no Secret.
func agentFingerprint(s *corev1.Secret) string {
	if s == nil {
		return ""
	}
	sum := sha256.Sum256(s.Data[agent.SecretKeyTLSCert])
	return hex.EncodeToString(sum[:8])
}

// renderedWithAgent says whether m was rendered with the agent.
func renderedWithAgent(m *kubevirtv1.VirtualMachine) bool {
	return m != nil && m.Spec.Template != nil && m.Spec.Template.ObjectMeta.Annotations[AnnotationAgentCertificate] != ""
}

// agentCurrent says whether m was rendered with the agent Secret s (or
// without an agent, s nil).
func agentCurrent(m *kubevirtv1.VirtualMachine, s *corev1.Secret) bool {
	have := ""
	if m != nil && m.Spec.Template != nil {
		have = m.Spec.Template.ObjectMeta.Annotations[AnnotationAgentCertificate]
	}
	return have == agentFingerprint(s)
}

// addAgentDisk marks out as rendered with the agent a.
func addAgentDisk(out *kubevirtv1.VirtualMachine, a *AgentInstall) {
	if a == nil {
		return
	}
	t := &out.Spec.Template.ObjectMeta
	if t.Annotations == nil {
		t.Annotations = map[string]string{}
	}
	t.Annotations[AnnotationAgentCertificate] = agentFingerprint(a.Secret)
}
