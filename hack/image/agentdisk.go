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

package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/kdomanski/iso9660"
)

// The agent's containerDisk (docs/agent.md): KubeVirt attaches the one file
// under /disk of the image to the VM; the guest mounts it by its label.
const (
	// agentISOLabel is what cloud-init's install script mounts.
	agentISOLabel = "WUKONGAGENT"
	// agentDiskFile is the ISO in the image, owned by the qemu user
	// (107:107), as KubeVirt's containerDisk documentation asks.
	agentDiskFile = "disk/agent.iso"
	qemuUID       = 107
	// agentSums names the checksums file: ISO 9660 names are stored in
	// lower case (and read so by Linux), so the guest sees "sha256sums".
	agentSums = "SHA256SUMS"
)

// The Primary Volume Descriptor (sector 16) holds, at these offsets, the
// volume's creation, modification and effective times (ECMA-119 8.4.26,
// 8.4.27, 8.4.29), which iso9660.ImageWriter sets to the time of the
// build: they are set again to created so that the bytes repeat.
var pvdTimes = []int64{813, 830, 864}

const sectorSize = 2048

// agentDiskISO writes to out an ISO 9660 volume labelled WUKONGAGENT with
// wukong-agent-linux-<arch> for each agent binary and their SHA256SUMS.
func agentDiskISO(out *os.File, agents binaries, created time.Time) error {
	w, err := iso9660.NewWriter()
	if err != nil {
		return err
	}
	defer func() { _ = w.Cleanup() }()
	platforms := make([]string, 0, len(agents))
	for p := range agents {
		platforms = append(platforms, p)
	}
	sort.Strings(platforms)
	var sums strings.Builder
	for _, p := range platforms {
		osName, arch, _ := strings.Cut(p, "/")
		name := "wukong-agent-" + osName + "-" + arch
		sum, err := addAgent(w, agents[p], name)
		if err != nil {
			return err
		}
		fmt.Fprintf(&sums, "%s  %s\n", sum, name)
	}
	if err := w.AddFile(strings.NewReader(sums.String()), agentSums); err != nil {
		return err
	}
	if err := w.WriteTo(out, agentISOLabel); err != nil {
		return err
	}
	ts := iso9660.VolumeDescriptorTimestampFromTime(created)
	b, err := ts.MarshalBinary()
	if err != nil {
		return err
	}
	for _, off := range pvdTimes {
		if _, err := out.WriteAt(b, 16*sectorSize+off); err != nil {
			return err
		}
	}
	return nil
}

// addAgent adds the binary at path as name and returns its sha256.
func addAgent(w *iso9660.ImageWriter, path, name string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if err := w.AddFile(io.TeeReader(f, h), name); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// buildAgentDisk is the wukong-agent-disk containerDisk: one layer with
// the ISO, the same for every platform (the ISO holds both binaries), in
// an index naming each platform so that any node pulls it.
func buildAgentDisk(agents binaries, created time.Time, labels map[string]string) (v1.ImageIndex, func(), error) {
	tmp, err := os.MkdirTemp("", "wukong-agent-disk-")
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() { _ = os.RemoveAll(tmp) }
	iso, err := os.Create(filepath.Join(tmp, "agent.iso"))
	if err == nil {
		err = agentDiskISO(iso, agents, created)
		if cerr := iso.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	disk, err := layer([]file{
		{name: "disk/", dir: true, mode: 0o555, uid: qemuUID},
		{name: agentDiskFile, mode: 0o440, uid: qemuUID, path: iso.Name()},
	}, created)
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	platforms := make([]string, 0, len(agents))
	for p := range agents {
		platforms = append(platforms, p)
	}
	sort.Strings(platforms)
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range platforms {
		osName, arch, _ := strings.Cut(p, "/")
		img, err := mutate.ConfigFile(mutate.MediaType(empty.Image, types.OCIManifestSchema1), &v1.ConfigFile{
			Architecture: arch, OS: osName, Created: v1.Time{Time: created},
			Config: v1.Config{Labels: labels},
		})
		if err == nil {
			img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
			img, err = mutate.Append(img, mutate.Addendum{Layer: disk, MediaType: types.OCILayer,
				History: v1.History{Created: v1.Time{Time: created}, CreatedBy: "hack/image --agent-disk"}})
		}
		if err != nil {
			cleanup()
			return nil, nil, err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{
			MediaType: types.OCIManifestSchema1, Platform: &v1.Platform{OS: osName, Architecture: arch},
		}})
	}
	return idx, cleanup, nil
}
