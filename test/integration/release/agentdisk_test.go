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

package release

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/kdomanski/iso9660"
)

// checkAgentDisk checks the wukong-agent-disk containerDisk of two builds
// (layouts a and b): the same digest; an image for each platform with one
// layer holding only /disk/agent.iso, owned by qemu (107:107) as KubeVirt
// asks; an ISO 9660 volume labelled WUKONGAGENT holding the agents of both
// architectures, byte-identical to those of the server image (server), and
// a SHA256SUMS that matches them, as the guest's install script checks it.
func checkAgentDisk(t *testing.T, a, b string, server v1.ImageIndex) {
	index := func(dir string) v1.ImageIndex {
		p, err := layout.FromPath(dir)
		if err != nil {
			t.Fatalf("no agent disk layout at %s: %v", dir, err)
		}
		top, err := p.ImageIndex()
		if err != nil {
			t.Fatal(err)
		}
		im, err := top.IndexManifest()
		if err != nil || len(im.Manifests) != 1 {
			t.Fatalf("the agent disk layout names %v: %v", im, err)
		}
		idx, err := top.ImageIndex(im.Manifests[0].Digest)
		if err != nil {
			t.Fatal(err)
		}
		return idx
	}
	idxA, idxB := index(a), index(b)
	da, err := idxA.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if db, _ := idxB.Digest(); da != db {
		t.Fatalf("two builds of the agent disk gave %s and %s", da, db)
	}

	want := map[string][]byte{} // the server image's agent, by arch
	sim, err := server.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range sim.Manifests {
		img, err := server.Image(m.Digest)
		if err != nil {
			t.Fatal(err)
		}
		want["wukong-agent-linux-"+m.Platform.Architecture] = extract(t, img)["usr/local/bin/wukong-agent"]
	}

	im, err := idxA.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var platforms []string
	for _, m := range im.Manifests {
		platforms = append(platforms, m.Platform.OS+"/"+m.Platform.Architecture)
		img, err := idxA.Image(m.Digest)
		if err != nil {
			t.Fatal(err)
		}
		layers, err := img.Layers()
		if err != nil || len(layers) != 1 {
			t.Fatalf("%s: %d layers (%v), want one", m.Platform.Architecture, len(layers), err)
		}
		files := extract(t, img)
		var names []string
		for n := range files {
			names = append(names, n)
		}
		slices.Sort(names)
		if wantNames := []string{"disk", "disk/agent.iso"}; !slices.Equal(names, wantNames) {
			t.Fatalf("agent disk filesystem %v, want exactly %v", names, wantNames)
		}
		checkISO(t, files["disk/agent.iso"], want)
	}
	slices.Sort(platforms)
	if wantP := []string{"linux/amd64", "linux/arm64"}; !slices.Equal(platforms, wantP) {
		t.Fatalf("agent disk platforms %v, want %v", platforms, wantP)
	}
}

// extract reads img's filesystem: regular files' bytes by name, and checks
// that everything under disk/ is the qemu user's, as KubeVirt asks.
func extract(t *testing.T, img v1.Image) map[string][]byte {
	files := map[string][]byte{}
	tr := tar.NewReader(mutate.Extract(img))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(h.Name, "/")
		if strings.HasPrefix(name, "disk") && (h.Uid != 107 || h.Gid != 107) {
			t.Errorf("%s is owned by %d:%d, want 107:107", name, h.Uid, h.Gid)
		}
		files[name] = nil
		if h.Typeflag == tar.TypeReg {
			if files[name], err = io.ReadAll(tr); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// checkISO reads the ISO as a guest would: its label, its files (names as
// Linux shows a plain ISO 9660 volume: lower case, no ";1"), and checks
// the agents against want and SHA256SUMS.
func checkISO(t *testing.T, iso []byte, want map[string][]byte) {
	img, err := iso9660.OpenImage(bytes.NewReader(iso))
	if err != nil {
		t.Fatalf("agent.iso is not an ISO 9660 image: %v", err)
	}
	if label, err := img.Label(); err != nil || strings.TrimSpace(label) != "WUKONGAGENT" {
		t.Errorf("volume label %q (%v), want WUKONGAGENT", label, err)
	}
	root, err := img.RootDir()
	if err != nil {
		t.Fatal(err)
	}
	children, err := root.GetChildren()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]byte{}
	for _, c := range children {
		b, err := io.ReadAll(c.Reader())
		if err != nil {
			t.Fatal(err)
		}
		got[c.Name()] = b
	}
	var names []string
	for n := range got {
		names = append(names, n)
	}
	slices.Sort(names)
	if wantNames := []string{"sha256sums", "wukong-agent-linux-amd64", "wukong-agent-linux-arm64"}; !slices.Equal(names, wantNames) {
		t.Fatalf("the ISO holds %v, want %v", names, wantNames)
	}
	sums := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(got["sha256sums"]))
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			t.Fatalf("SHA256SUMS line %q is not sha256sum's format", sc.Text())
		}
		sums[name] = sum
	}
	for name, bin := range want {
		if !bytes.Equal(got[name], bin) {
			t.Errorf("%s on the ISO differs from the server image's wukong-agent", name)
		}
		s := sha256.Sum256(got[name])
		if sums[name] != hex.EncodeToString(s[:]) {
			t.Errorf("SHA256SUMS says %s for %s, the file is %x", sums[name], name, s)
		}
		checkBinary(t, "wukong-agent", got[name], strings.TrimPrefix(name, "wukong-agent-linux-"))
	}
	if len(sums) != len(want) {
		t.Errorf("SHA256SUMS names %d files, want %d", len(sums), len(want))
	}
}
