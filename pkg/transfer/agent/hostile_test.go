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

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/novasphere/wukong/pkg/transfer/archive"
	"github.com/novasphere/wukong/pkg/transfer/files"
)

// hostilePaths try every way out of the root /data: "..", absolute paths
// elsewhere, symbolic links out (absolute, relative, through a link, with
// ".." after a name, /proc's magic links), NUL, very long names, Windows
// separators and URL-encoded slashes and dots (which the agent must take
// as the characters they are, never decode).
var hostilePaths = []string{
	"/data/../outside/secret",
	"/data/../../etc/passwd",
	"/data/sub/../../outside/secret",
	"/data/./../outside",
	"//data/../outside/secret",
	"/outside/secret",
	"/etc/passwd",
	"/",
	"/dat",
	"/data2/x",
	"../outside/secret",
	"data/../outside/secret",
	"",
	"/data/abs/secret",
	"/data/absfile",
	"/data/rel/secret",
	"/data/rel/dir/secret",
	"/data/relfile",
	"/data/sub/deep/secret",
	"/data/sub/deep/dir",
	"/data/twice/secret",
	"/data/dotdot/secret",
	"/data/sub/root/etc/passwd",
	"/data/sub/loop/x",
	"/data/sub/parent/rel/secret",
	"/data/proc",
	"/data/abs",
	"/data/rel",
	"/data/\x00/../outside/secret",
	"/data/relfile\x00",
	"/data/a\x00b",
	"/data/" + strings.Repeat("a/", 2100),
	"/data/" + strings.Repeat("x", 300),
	"/data/" + strings.Repeat("../", 1000) + "outside/secret",
	`/data\..\outside\secret`,
	`\data\..\outside\secret`,
	`C:\outside\secret`,
	`/data/..\..\outside\secret`,
	"/data/%2e%2e/outside/secret",
	"/data/..%2foutside%2fsecret",
	"/data/%2E%2E%2F%2E%2E%2Foutside%2Fsecret",
	"/data/%00",
	"/data/rel%2fsecret",
	"/data/\u2025/outside",
	"/data/\uff0e\uff0e/outside",
}

// tryEverything asks the agent for every operation on p and checks that
// nothing of the secret comes back, in an answer or an error.
func tryEverything(t testing.TB, f *fixture, p string) {
	t.Helper()
	c, ctx := f.c, context.Background()
	var got bytes.Buffer
	check := func(op string, err error) {
		if bytes.Contains(got.Bytes(), []byte(secretMarker)) {
			t.Fatalf("%s %q returned the secret outside the root", op, p)
		}
		if err != nil && strings.Contains(err.Error(), secretMarker) {
			t.Fatalf("%s %q: the error holds the secret: %v", op, p, err)
		}
		got.Reset()
	}
	if fi, err := c.Stat(p); err == nil && fi.Mode().IsRegular() {
		_, err = c.Read(ctx, p, 0, fi.Size(), fi.Size(), &got)
		check("read", err)
	}
	_, err := c.Read(ctx, p, 0, int64(len(secretMarker)), int64(len(secretMarker)), &got)
	check("read", err)
	entries, err := c.List(ctx, p, 0)
	for _, e := range entries {
		got.WriteString(e.Name + e.LinkTarget)
	}
	check("list", err)
	_, err = c.WriteTar(ctx, p, &got, archive.WriteOptions{})
	check("tar", err)
	_, _, err = c.SHA256(ctx, p)
	check("sha256", err)
	_, err = c.StatFS(ctx, p)
	check("statfs", err)
	_, err = c.Upload(ctx, p, strings.NewReader("overwritten"), files.UploadOptions{Size: -1})
	check("upload", err)
	_, err = c.Upload(ctx, p, strings.NewReader("created"), files.UploadOptions{Size: -1, NoClobber: true, CreateParents: true})
	check("create", err)
	_, err = c.WriteChunk(ctx, p, "abc", 0, 5, true, strings.NewReader("chunk"), nil)
	check("chunk", err)
	_, err = c.CommitChunks(ctx, p, "abc", files.CommitOptions{Size: 5})
	check("commit", err)
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	tw.WriteHeader(&tar.Header{Name: "planted", Mode: 0o644, Size: 1, Typeflag: tar.TypeReg})
	tw.Write([]byte("x"))
	tw.Close()
	_, err = c.ExtractTar(ctx, p, &tb, true, archive.ExtractOptions{})
	check("extract", err)
	_, err = c.Sweep(ctx, []files.SweepRoot{{Dir: p, Recursive: true}}, files.SweepOptions{})
	check("sweep", err)
	check("delete", c.Delete(p, false))
	check("delete -r", c.Delete(p, true))
	check("remove", c.Remove(p))
}

// TestHostilePaths: whatever the path, nothing outside the root is read,
// written, created or removed; paths that leave the roots lexically are
// refused as such.
func TestHostilePaths(t *testing.T) {
	for _, p := range hostilePaths {
		t.Run(strings.ToValidUTF8(p[:min(len(p), 60)], "?"), func(t *testing.T) {
			f := newFixture(t, Limits{})
			before := f.snapshot(t)
			tryEverything(t, f, p)
			if after := f.snapshot(t); !equalMaps(before, after) {
				t.Fatalf("%q changed something outside the root:\nbefore %v\nafter  %v", p, before, after)
			}
		})
	}
	// The lexical refusals say why.
	f := newFixture(t, Limits{})
	for p, want := range map[string]error{
		"/data/../outside/secret":             ErrOutsideRoots,
		"/etc/passwd":                         ErrOutsideRoots,
		"/":                                   ErrOutsideRoots,
		"/data2/x":                            ErrOutsideRoots,
		`/data\..\outside`:                    ErrOutsideRoots,
		"../outside/secret":                   ErrBadRequest,
		"":                                    ErrBadRequest,
		"/data/a\x00b":                        ErrBadRequest,
		"/data/" + strings.Repeat("a/", 2100): ErrBadRequest,
		"/data/" + strings.Repeat("x", 300):   ErrBadRequest,
		"/data/relfile":                       ErrOutsideRoots,
		"/data/abs/secret":                    ErrOutsideRoots,
		"/data/proc":                          ErrOutsideRoots,
		"/data/sub/root/etc/passwd":           ErrOutsideRoots,
	} {
		_, err := f.c.Stat(p)
		if !errors.Is(err, want) {
			t.Errorf("stat %q: %v, want %v", p[:min(len(p), 60)], err, want)
		}
	}
	// Encoded separators are names, not separators: they stay in the root.
	_, err := f.c.Upload(context.Background(), "/data/..%2foutside%2fsecret", strings.NewReader("x"), files.UploadOptions{Size: -1})
	must(t, err)
	if _, err := os.Stat(f.data + "/..%2foutside%2fsecret"); err != nil {
		t.Errorf("an encoded name did not stay a name: %v", err)
	}
}

// FuzzAgentPath drives every operation with arbitrary paths and checks
// that nothing outside the root changes and the secret never comes out.
// `go test` runs the seeds (the hostile table); `go test -fuzz` explores.
func FuzzAgentPath(f *testing.F) {
	for _, p := range hostilePaths {
		f.Add(p)
	}
	fx := newFixture(f, Limits{MaxListEntries: 1000, MaxArchiveEntries: 1000, MaxFileSize: 1 << 20})
	before := fx.snapshot(f)
	f.Fuzz(func(t *testing.T, p string) {
		tryEverything(t, fx, p)
		if after := fx.snapshot(t); !equalMaps(before, after) {
			t.Fatalf("%q changed something outside the root", p)
		}
		// The links are what a path would escape through: put back any
		// the operations replaced or removed.
		fx.plantLinks(t)
	})
}
