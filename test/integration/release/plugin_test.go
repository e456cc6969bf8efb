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
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"debug/macho"
	"debug/pe"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/novasphere/wukong/test/integration/framework"
)

var pluginPlatforms = []string{"darwin/amd64", "darwin/arm64", "linux/amd64", "linux/arm64", "windows/amd64", "windows/arm64"}

// TestPluginArchivesAndKrewManifest runs what `make release` runs for the
// plugin, serves the result on loopback as a release page would, and checks
// it as krew's index CI does: validate-krew-manifest installs every
// platform the manifest names with `kubectl krew install`, which downloads
// each archive and checks its sha256.
func TestPluginArchivesAndKrewManifest(t *testing.T) {
	root, err := framework.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(root, "_output", "bin")
	run(t, root, nil, "hack/tools/krew/build.sh")

	rel := t.TempDir()
	out := filepath.Join(rel, "plugin")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(out))}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	run(t, root, []string{"REL_DIR=" + rel, "RELEASE_URL=http://" + ln.Addr().String()}, "hack/build-release.sh", "plugin")

	// SHA256SUMS names each archive once, with its sum.
	sums := map[string]string{}
	f, err := os.Open(filepath.Join(out, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for s := bufio.NewScanner(f); s.Scan(); {
		sum, name, ok := strings.Cut(s.Text(), "  ")
		if !ok {
			t.Fatalf("SHA256SUMS line %q", s.Text())
		}
		sums[name] = sum
	}
	for _, p := range pluginPlatforms {
		osName, arch, _ := strings.Cut(p, "/")
		t.Run(p, func(t *testing.T) {
			matches, _ := filepath.Glob(filepath.Join(out, "kubectl-wukong_*_"+osName+"_"+arch+".tar.gz"))
			if len(matches) != 1 {
				t.Fatalf("archives for %s: %v", p, matches)
			}
			b, err := os.ReadFile(matches[0])
			if err != nil {
				t.Fatal(err)
			}
			h := sha256.Sum256(b)
			if got := sums[filepath.Base(matches[0])]; got != hex.EncodeToString(h[:]) {
				t.Errorf("SHA256SUMS says %q for %s, the file's is %x", got, filepath.Base(matches[0]), h)
			}
			checkArchive(t, matches[0], osName, arch)
		})
	}
	if len(sums) != len(pluginPlatforms) {
		t.Errorf("SHA256SUMS has %d lines, want %d", len(sums), len(pluginPlatforms))
	}

	cmd := exec.Command(filepath.Join(bin, "validate-krew-manifest"), "-manifest", filepath.Join(out, "wukong.yaml"))
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
	if b, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(b), "all 6 spec.platforms installed fine") {
		t.Fatalf("validate-krew-manifest: %v\n%s", err, b)
	}
}

func run(t *testing.T, dir string, env []string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, b)
	}
}

// checkArchive: the binary for the platform, the LICENSE krew installs, and
// on the Unix shells the completion hook; nothing else.
func checkArchive(t *testing.T, archive, osName, arch string) {
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	exe := "kubectl-wukong"
	want := []string{"LICENSE", exe, "kubectl_complete-wukong"}
	if osName == "windows" {
		exe = "kubectl-wukong.exe"
		want = []string{"LICENSE", exe}
	}
	var names []string
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if h.Name != exe {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		checkExecutable(t, b, osName, arch)
	}
	slices.Sort(names)
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Errorf("archive holds %v, want %v", names, want)
	}
}

func checkExecutable(t *testing.T, b []byte, osName, arch string) {
	r := bytes.NewReader(b)
	switch osName {
	case "linux":
		f, err := elf.NewFile(r)
		if err != nil {
			t.Fatalf("not ELF: %v", err)
		}
		if m := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[arch]; f.Machine != m {
			t.Errorf("machine %v", f.Machine)
		}
		if f.Section(".symtab") != nil {
			t.Errorf("not stripped")
		}
		if arch == runtime.GOARCH {
			p := filepath.Join(t.TempDir(), "kubectl-wukong")
			if err := os.WriteFile(p, b, 0o755); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(p, "--version").CombinedOutput()
			if err != nil || !strings.HasPrefix(string(out), "kubectl-wukong v") || strings.Contains(string(out), "commit unknown") {
				t.Errorf("--version: %v %q", err, out)
			}
		}
	case "darwin":
		f, err := macho.NewFile(r)
		if err != nil {
			t.Fatalf("not Mach-O: %v", err)
		}
		if c := map[string]macho.Cpu{"amd64": macho.CpuAmd64, "arm64": macho.CpuArm64}[arch]; f.Cpu != c {
			t.Errorf("cpu %v", f.Cpu)
		}
	case "windows":
		f, err := pe.NewFile(r)
		if err != nil {
			t.Fatalf("not PE: %v", err)
		}
		if m := map[string]uint16{"amd64": pe.IMAGE_FILE_MACHINE_AMD64, "arm64": pe.IMAGE_FILE_MACHINE_ARM64}[arch]; f.Machine != m {
			t.Errorf("machine %#x", f.Machine)
		}
	}
}
