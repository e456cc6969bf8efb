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

// Package release tests what a release ships: the image `make image`
// builds and the plugin archives `make release` builds.
package release

import (
	"archive/tar"
	"bytes"
	"crypto/x509"
	"debug/elf"
	"encoding/pem"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/novasphere/wukong/test/integration/framework"
)

// buildImage runs what `make image` runs, into dir, and returns the index
// digest it printed.
func buildImage(t *testing.T, root, dir string) string {
	t.Helper()
	cmd := exec.Command("hack/build-release.sh", "image")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "IMAGE_LAYOUT="+dir, "IMAGE=", "AGENT_DISK_LAYOUT="+dir+"-agent-disk", "AGENT_DISK_IMAGE=")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("hack/build-release.sh image: %v\n%s", err, errb.String())
	}
	return strings.TrimSpace(out.String())
}

// TestImageIsReproducibleMultiArchAndMinimal builds the image twice and
// checks what a platform team checks before running it: the same digest,
// both architectures, a non-root user, the entrypoint, and nothing in the
// filesystem but the static binary, CA roots and the user database.
func TestImageIsReproducibleMultiArchAndMinimal(t *testing.T) {
	root, err := framework.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	first := buildImage(t, root, filepath.Join(tmp, "a"))
	second := buildImage(t, root, filepath.Join(tmp, "b"))
	if first == "" || first != second {
		t.Fatalf("two builds of the same source gave %q and %q", first, second)
	}

	p, err := layout.FromPath(filepath.Join(tmp, "a"))
	if err != nil {
		t.Fatal(err)
	}
	top, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	d, err := v1.NewHash(first)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := top.ImageIndex(d)
	if err != nil {
		t.Fatalf("the layout has no index %s: %v", first, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var platforms []string
	for _, m := range im.Manifests {
		if m.Platform == nil {
			t.Fatalf("manifest %s has no platform", m.Digest)
		}
		pl := m.Platform.OS + "/" + m.Platform.Architecture
		platforms = append(platforms, pl)
		img, err := idx.Image(m.Digest)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(pl, func(t *testing.T) { checkImage(t, img, m.Platform.Architecture) })
	}
	slices.Sort(platforms)
	if want := []string{"linux/amd64", "linux/arm64"}; !slices.Equal(platforms, want) {
		t.Fatalf("platforms %v, want %v", platforms, want)
	}
	t.Run("agent disk", func(t *testing.T) {
		checkAgentDisk(t, filepath.Join(tmp, "a-agent-disk"), filepath.Join(tmp, "b-agent-disk"), idx)
	})
}

func checkImage(t *testing.T, img v1.Image, arch string) {
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Architecture != arch || cf.OS != "linux" {
		t.Errorf("config says %s/%s", cf.OS, cf.Architecture)
	}
	if cf.Config.User != "65532:65532" {
		t.Errorf("user %q, want the non-root 65532:65532", cf.Config.User)
	}
	if want := []string{"/usr/local/bin/wukong-apiserver"}; !slices.Equal(cf.Config.Entrypoint, want) {
		t.Errorf("entrypoint %q, want %q", cf.Config.Entrypoint, want)
	}

	files := map[string][]byte{}
	var names []string
	tr := tar.NewReader(mutate.Extract(img))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, strings.TrimSuffix(h.Name, "/"))
		if h.Typeflag == tar.TypeReg {
			if files[h.Name], err = io.ReadAll(tr); err != nil {
				t.Fatal(err)
			}
		}
	}
	slices.Sort(names)
	want := []string{"etc", "etc/group", "etc/passwd", "etc/ssl", "etc/ssl/certs", "etc/ssl/certs/ca-certificates.crt",
		"home", "home/nonroot", "tmp", "usr", "usr/local", "usr/local/bin", "usr/local/bin/wukong-agent", "usr/local/bin/wukong-apiserver"}
	if !slices.Equal(names, want) {
		t.Errorf("image filesystem %v, want exactly %v", names, want)
	}
	if !strings.Contains(string(files["etc/passwd"]), "nonroot:x:65532:65532:") {
		t.Errorf("/etc/passwd does not name uid 65532: %q", files["etc/passwd"])
	}
	roots, rest := 0, files["etc/ssl/certs/ca-certificates.crt"]
	for {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			t.Fatalf("CA bundle: %v", err)
		}
		roots++
	}
	if roots < 100 {
		t.Errorf("CA bundle has %d roots", roots)
	}

	// wukong-agent rides along for the pvc helper pods and for guests.
	for _, name := range []string{"wukong-apiserver", "wukong-agent"} {
		checkBinary(t, name, files["usr/local/bin/"+name], arch)
	}
}

// checkBinary checks that bin is a static, stripped ELF binary for arch
// and, when it runs here, that --version names its build.
func checkBinary(t *testing.T, name string, bin []byte, arch string) {
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		t.Fatalf("%s is not an ELF binary: %v", name, err)
	}
	if m := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[arch]; f.Machine != m {
		t.Errorf("%s: binary for %v, want %v", name, f.Machine, m)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s needs a dynamic loader; it must be static (CGO_ENABLED=0)", name)
		}
	}
	if f.Section(".symtab") != nil {
		t.Errorf("%s is not stripped (has .symtab)", name)
	}
	if arch == runtime.GOARCH {
		checkVersion(t, name, bin)
	}
}

// checkVersion runs the image's binary with --version: it must name the
// commit it was built from and a build date, before touching any flag.
func checkVersion(t *testing.T, name string, bin []byte) {
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(p, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("--version: %v\n%s", err, out)
	}
	root, _ := framework.RepoRoot()
	head, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	v := string(out)
	if !strings.HasPrefix(v, name+" ") || !strings.Contains(v, "commit "+strings.TrimSpace(string(head))) ||
		strings.Contains(v, "built unknown") || !strings.Contains(v, runtime.Version()) {
		t.Errorf("--version says %q; want the version, commit %s, build date and Go version", v, head)
	}
}
