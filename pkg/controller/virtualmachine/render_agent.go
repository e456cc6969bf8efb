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
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/transfer/agent"
	"github.com/novasphere/wukong/pkg/version"
)

// Where cloud-init puts the agent in the guest (docs/agent.md).
const (
	AgentConfigDir   = "/etc/wukong-agent"
	AgentConfigFile  = AgentConfigDir + "/config.yaml"
	AgentUnitFile    = "/etc/systemd/system/wukong-agent.service"
	AgentInstallFile = "/usr/local/lib/wukong-agent/install.sh"
	AgentBinary      = "/usr/local/bin/wukong-agent"
	// AgentISOLabel is the volume label of the agent disk's ISO.
	AgentISOLabel = "WUKONGAGENT"
	// AgentDiskPath is the ISO inside the containerDisk image.
	AgentDiskPath = "/disk/agent.iso"
	// agentVolume names the cdrom disk and volume.
	agentVolume = "wukongagent"
)

// AgentDiskRepository is where the release puts the agent's containerDisk,
// beside ghcr.io/novasphere/wukong-apiserver.
const AgentDiskRepository = "ghcr.io/novasphere/wukong-agent-disk"

// DefaultAgentDiskImage is the agent disk of this server's release: the
// same version tag as its own image.
func DefaultAgentDiskImage() string {
	return AgentDiskRepository + ":" + version.Get().Version
}

// AgentConfig is the part of wukong-agent's --config file (cmd/wukong-agent)
// the controller writes.
type AgentConfig struct {
	Listen      string       `json:"listen"`
	Roots       []agent.Root `json:"roots"`
	TokenFile   string       `json:"tokenFile"`
	TLSCertFile string       `json:"tlsCertFile"`
	TLSKeyFile  string       `json:"tlsKeyFile"`
}

// cloudConfig is the part of a #cloud-config the controller writes.
type cloudConfig struct {
	WriteFiles []writeFile `json:"write_files,omitempty"`
	RunCmd     [][]string  `json:"runcmd,omitempty"`
}

// agentUnit runs the agent as root, as ssh's default user is: it serves
// the roots with that user's rights. It restarts whatever ends it.
const agentUnit = `[Unit]
Description=Wukong file agent (method http)
After=network-online.target
Wants=network-online.target

[Service]
ExecStart=` + AgentBinary + ` --config ` + AgentConfigFile + `
Restart=always
RestartSec=2

[Install]
WantedBy=multi-user.target
`

// agentInstallScript installs the agent from its read-only disk: the
// binary of this machine's architecture, checked against SHA256SUMS, and
// starts the unit. Nothing reaches the network.
const agentInstallScript = `#!/bin/sh
# Installed by wukong-apiserver through cloud-init: copies wukong-agent from
# the ISO labelled ` + AgentISOLabel + ` (the wukong-agent-disk containerDisk),
# checks it, and starts it.
set -eu
case "$(uname -m)" in
x86_64|amd64) arch=amd64 ;;
aarch64|arm64) arch=arm64 ;;
*) echo "wukong-agent: no binary for $(uname -m)" >&2; exit 1 ;;
esac
bin=wukong-agent-linux-$arch
mnt=$(mktemp -d)
mount -o ro LABEL=` + AgentISOLabel + ` "$mnt"
trap 'umount "$mnt"; rmdir "$mnt"' EXIT
(cd "$mnt" && grep "  $bin\$" SHA256SUMS | sha256sum -c -)
install -m 0755 "$mnt/$bin" ` + AgentBinary + `.new
mv -f ` + AgentBinary + `.new ` + AgentBinary + `
systemctl daemon-reload
systemctl enable wukong-agent.service
systemctl restart wukong-agent.service
`

// agentCloudConfig is what cloud-init writes and runs to install and start
// the agent a: its files and the install command; nothing when a is nil.
func agentCloudConfig(w *v1alpha1.Wukong, a *AgentInstall) ([]writeFile, [][]string, error) {
	if a == nil {
		return nil, nil, nil
	}
	hc := w.Spec.FileTransfer.HTTPConfig
	port := v1alpha1.DefaultHTTPPort
	if hc.Port != nil {
		port = *hc.Port
	}
	cfg := AgentConfig{Listen: ":" + strconv.Itoa(int(port)),
		TokenFile:   AgentConfigDir + "/" + agent.SecretKeyToken,
		TLSCertFile: AgentConfigDir + "/" + agent.SecretKeyTLSCert,
		TLSKeyFile:  AgentConfigDir + "/" + agent.SecretKeyTLSKey}
	roots := hc.Roots
	if len(roots) == 0 {
		roots = []string{"/"} // read without defaulting
	}
	for _, r := range roots {
		cfg.Roots = append(cfg.Roots, agent.Root{Path: r})
	}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, nil, err
	}
	for _, k := range []string{agent.SecretKeyToken, agent.SecretKeyTLSCert, agent.SecretKeyTLSKey} {
		if len(a.Secret.Data[k]) == 0 {
			return nil, nil, fmt.Errorf("the agent Secret %s has no %s", a.Secret.Name, k)
		}
	}
	private := func(name string, content []byte) writeFile {
		return writeFile{Path: AgentConfigDir + "/" + name, Content: string(content), Permissions: "0600", Owner: "root:root"}
	}
	files := []writeFile{
		private(agent.SecretKeyToken, a.Secret.Data[agent.SecretKeyToken]),
		private(agent.SecretKeyTLSCert, a.Secret.Data[agent.SecretKeyTLSCert]),
		private(agent.SecretKeyTLSKey, a.Secret.Data[agent.SecretKeyTLSKey]),
		private("config.yaml", b),
		{Path: AgentUnitFile, Content: agentUnit, Permissions: "0644", Owner: "root:root"},
		{Path: AgentInstallFile, Content: agentInstallScript, Permissions: "0755", Owner: "root:root"},
	}
	return files, [][]string{{"sh", AgentInstallFile}}, nil
}

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

// addAgentDisk gives out the agent's disk, a read-only cdrom the guest
// installs the agent from, and marks it as rendered with the agent a.
func addAgentDisk(out *kubevirtv1.VirtualMachine, a *AgentInstall) {
	if a == nil {
		return
	}
	t := &out.Spec.Template.ObjectMeta
	if t.Annotations == nil {
		t.Annotations = map[string]string{}
	}
	t.Annotations[AnnotationAgentCertificate] = agentFingerprint(a.Secret)
	spec := &out.Spec.Template.Spec
	spec.Domain.Devices.Disks = append(spec.Domain.Devices.Disks, kubevirtv1.Disk{
		Name: agentVolume, DiskDevice: kubevirtv1.DiskDevice{CDRom: &kubevirtv1.CDRomTarget{Bus: kubevirtv1.DiskBusSATA, ReadOnly: ptr.To(true)}},
	})
	spec.Volumes = append(spec.Volumes, kubevirtv1.Volume{
		Name: agentVolume, VolumeSource: kubevirtv1.VolumeSource{ContainerDisk: &kubevirtv1.ContainerDiskSource{
			Image: a.DiskImage, Path: AgentDiskPath, ImagePullPolicy: corev1.PullIfNotPresent}},
	})
}
