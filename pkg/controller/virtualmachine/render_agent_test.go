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
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/transfer/agent"
)

func TestRenderAgent(t *testing.T) {
	w := httpWukong()
	w.Spec.FileTransfer.HTTPConfig.Port = ptr.To[int32](9443)
	w.Spec.FileTransfer.HTTPConfig.Roots = []string{"/data", "/srv/app"}
	w.Spec.CloudInit = &v1alpha1.CloudInitSpec{Files: []v1alpha1.CloudInitFile{{Path: "/etc/motd", Content: "hello\n"}}}
	s, _, err := desiredAgentSecret(w, nil, time.Now())
	require.NoError(t, err)
	m, userData, err := RenderWithFiles(w, CloudInitData{Files: map[string][]byte{}, Agent: &AgentInstall{Secret: s, DiskImage: "registry.example.com/wukong-agent-disk:v1"}})
	require.NoError(t, err)

	// The token and key go into the referenced Secret, never the VM.
	require.NotNil(t, userData)
	ci := cloudInitOf(t, m)
	assert.Empty(t, ci.UserData)
	require.NotNil(t, ci.UserDataSecretRef)
	assert.Equal(t, UserDataSecretName("vm1"), ci.UserDataSecretRef.Name)
	vmJSON, err := json.Marshal(m)
	require.NoError(t, err)
	for _, k := range []string{agent.SecretKeyToken, agent.SecretKeyTLSKey} {
		assert.NotContains(t, string(vmJSON), string(s.Data[k]))
	}

	ud := string(userData.Data[UserDataKey])
	files := map[string]writeFile{}
	for _, f := range writeFiles(t, ud) {
		files[f.Path] = f
	}
	assert.Equal(t, "hello\n", files["/etc/motd"].Content, "the user's files stay")
	for name, k := range map[string]string{"token": agent.SecretKeyToken, "tls.crt": agent.SecretKeyTLSCert, "tls.key": agent.SecretKeyTLSKey} {
		f := files["/etc/wukong-agent/"+name]
		assert.Equal(t, string(s.Data[k]), f.Content, name)
		assert.Equal(t, "0600", f.Permissions, name)
	}
	var cfg AgentConfig
	require.NoError(t, yaml.UnmarshalStrict([]byte(files[AgentConfigFile].Content), &cfg))
	assert.Equal(t, AgentConfig{Listen: ":9443", Roots: []agent.Root{{Path: "/data"}, {Path: "/srv/app"}},
		TokenFile: "/etc/wukong-agent/token", TLSCertFile: "/etc/wukong-agent/tls.crt", TLSKeyFile: "/etc/wukong-agent/tls.key"}, cfg)
	assert.Contains(t, files[AgentUnitFile].Content, "ExecStart=/usr/local/bin/wukong-agent --config /etc/wukong-agent/config.yaml")
	assert.Contains(t, files[AgentInstallFile].Content, "mount -o ro LABEL=WUKONGAGENT")
	assert.Contains(t, files[AgentInstallFile].Content, "sha256sum -c")
	var runcmd struct {
		RunCmd [][]string `json:"runcmd"`
	}
	require.NoError(t, yaml.Unmarshal([]byte(ud), &runcmd))
	assert.Equal(t, [][]string{{"sh", AgentInstallFile}}, runcmd.RunCmd)

	// The cdrom it installs from.
	var disk *kubevirtv1.Disk
	for i, d := range m.Spec.Template.Spec.Domain.Devices.Disks {
		if d.Name == agentVolume {
			disk = &m.Spec.Template.Spec.Domain.Devices.Disks[i]
		}
	}
	require.NotNil(t, disk)
	require.NotNil(t, disk.CDRom)
	assert.True(t, *disk.CDRom.ReadOnly)
	var vol *kubevirtv1.Volume
	for i, v := range m.Spec.Template.Spec.Volumes {
		if v.Name == agentVolume {
			vol = &m.Spec.Template.Spec.Volumes[i]
		}
	}
	require.NotNil(t, vol)
	require.NotNil(t, vol.ContainerDisk)
	assert.Equal(t, "registry.example.com/wukong-agent-disk:v1", vol.ContainerDisk.Image)
	assert.Equal(t, AgentDiskPath, vol.ContainerDisk.Path)
	assert.True(t, agentCurrent(m, s))

	// A renewed certificate renders again.
	renewed, _, err := desiredAgentSecret(w, s, time.Now().Add(300*24*time.Hour))
	require.NoError(t, err)
	assert.False(t, agentCurrent(m, renewed))

	// Without the agent: no cdrom, no agent files.
	plain, _, err := RenderWithFiles(w, CloudInitData{Files: map[string][]byte{}})
	require.NoError(t, err)
	assert.NotContains(t, plain.Spec.Template.Spec.Volumes, *vol)
	assert.NotContains(t, cloudInitOf(t, plain).UserData, "wukong-agent")
	assert.True(t, agentCurrent(plain, nil))
	assert.False(t, renderedWithAgent(plain))
	assert.True(t, renderedWithAgent(m))
}
