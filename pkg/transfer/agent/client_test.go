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
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/novasphere/wukong/pkg/transfer/archive"
	"github.com/novasphere/wukong/pkg/transfer/files"
)

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func mode(m os.FileMode) *os.FileMode { return &m }

// TestClientRoundTrip drives every operation of the client against the
// real handler, over TLS pinned to the agent's certificate.
func TestClientRoundTrip(t *testing.T) {
	f := newFixture(t, Limits{})
	c, ctx := f.c, context.Background()
	body := []byte("hello, wukong agent\n")

	res, err := c.Upload(ctx, "/data/app/config.yaml", bytes.NewReader(body), files.UploadOptions{
		CreateParents: true, Size: int64(len(body)), SHA256: sum(body), Mode: mode(0o600)})
	must(t, err)
	if !res.Created || res.Bytes != int64(len(body)) || res.SHA256 != sum(body) {
		t.Fatalf("upload: %+v", res)
	}
	got, err := os.ReadFile(filepath.Join(f.data, "app/config.yaml"))
	must(t, err)
	if !bytes.Equal(got, body) {
		t.Fatalf("the guest holds %q", got)
	}
	fi, err := os.Stat(filepath.Join(f.data, "app/config.yaml"))
	must(t, err)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode())
	}
	// Replacing keeps the mode and says it replaced.
	var seen bytes.Buffer
	res, err = c.Upload(ctx, "/data/app/config.yaml", strings.NewReader("v2"), files.UploadOptions{Size: -1, Observer: &seen})
	must(t, err)
	if res.Created || seen.String() != "v2" {
		t.Errorf("replace: %+v, observer saw %q", res, seen.String())
	}
	if fi, _ := os.Stat(filepath.Join(f.data, "app/config.yaml")); fi.Mode().Perm() != 0o600 {
		t.Errorf("replace changed the mode to %v", fi.Mode())
	}

	big := bytes.Repeat([]byte("0123456789"), 100000)
	must(t, os.WriteFile(filepath.Join(f.data, "big.bin"), big, 0o644))
	st, err := c.Stat("/data/big.bin")
	must(t, err)
	if st.Size() != int64(len(big)) || st.IsDir() || st.Name() != "big.bin" {
		t.Fatalf("stat: %v %v %v", st.Name(), st.Size(), st.Mode())
	}
	var out bytes.Buffer
	n, err := c.Read(ctx, "/data/big.bin", 12345, 1000, st.Size(), &out)
	must(t, err)
	if n != 1000 || !bytes.Equal(out.Bytes(), big[12345:13345]) {
		t.Fatalf("ranged read: %d bytes", n)
	}
	out.Reset()
	if _, err := c.Read(ctx, "/data/big.bin", 0, st.Size(), st.Size(), &out); err != nil || !bytes.Equal(out.Bytes(), big) {
		t.Fatalf("whole read: %v", err)
	}
	// A file that changed since its Stat fails rather than pass as whole.
	if _, err := c.Read(ctx, "/data/big.bin", 0, 10, st.Size()+1, io.Discard); err == nil {
		t.Errorf("a read with the wrong size succeeded")
	}

	size, digest, err := c.SHA256(ctx, "/data/big.bin")
	must(t, err)
	if size != int64(len(big)) || digest != sum(big) {
		t.Errorf("sha256: %d %s", size, digest)
	}
	fsst, err := c.StatFS(ctx, "/data")
	must(t, err)
	if fsst.TotalBytes == 0 || fsst.AvailBytes > fsst.TotalBytes {
		t.Errorf("statfs: %+v", fsst)
	}

	entries, err := c.List(ctx, "/data", 0)
	must(t, err)
	var names []string
	links := map[string]string{}
	for _, e := range entries {
		names = append(names, e.Name)
		links[e.Name] = e.LinkTarget
	}
	if !sort.StringsAreSorted(names) || links["rel"] != "../outside" || len(names) < 5 {
		t.Errorf("listing %v, links %v", names, links)
	}

	// A tar of /data/app, and back under /data/copy.
	var tb bytes.Buffer
	stats, err := c.WriteTar(ctx, "/data/app", &tb, archive.WriteOptions{})
	must(t, err)
	if stats.Files != 1 || stats.Dirs != 1 {
		t.Errorf("tar stats %+v", stats)
	}
	tr := tar.NewReader(bytes.NewReader(tb.Bytes()))
	var tarNames []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		must(t, err)
		tarNames = append(tarNames, h.Name)
	}
	if strings.Join(tarNames, ",") != "app/,app/config.yaml" {
		t.Errorf("tar entries %v", tarNames)
	}
	var gz bytes.Buffer
	if _, err := c.WriteTar(ctx, "/data/app", &gz, archive.WriteOptions{Gzip: true}); err != nil || !bytes.HasPrefix(gz.Bytes(), []byte{0x1f, 0x8b}) {
		t.Errorf("tar.gz: %v", err)
	}
	xs, err := c.ExtractTar(ctx, "/data/copy", bytes.NewReader(gz.Bytes()), true, archive.ExtractOptions{})
	must(t, err)
	if got, _ := os.ReadFile(filepath.Join(f.data, "copy/app/config.yaml")); string(got) != "v2" || xs.Files != 1 {
		t.Errorf("extracted %q, stats %+v", got, xs)
	}

	// Chunks in any order, committed with the whole file's sha256.
	whole := bytes.Repeat([]byte("chunky!"), 3000)
	half := int64(len(whole) / 2)
	id := "0b7a3c1e-5d2f-4c6b-9a8e-1f2d3c4b5a69"
	for _, ch := range []struct{ off, end int64 }{{half, int64(len(whole))}, {0, half}} {
		var obs bytes.Buffer
		n, err := c.WriteChunk(ctx, "/data/chunked/file.bin", id, ch.off, int64(len(whole))-ch.off, true, bytes.NewReader(whole[ch.off:ch.end]), &obs)
		must(t, err)
		if n != ch.end-ch.off || int64(obs.Len()) != n {
			t.Fatalf("chunk at %d: %d bytes, observer %d", ch.off, n, obs.Len())
		}
	}
	if _, err := os.Stat(filepath.Join(f.data, "chunked", filepath.Base(files.ChunkTempName("/chunked/file.bin", id)))); err != nil {
		t.Errorf("the chunks do not collect where wukong-apiserver looks for them: %v", err)
	}
	s, err := c.CommitChunks(ctx, "/data/chunked/file.bin", id, files.CommitOptions{Size: int64(len(whole)), SHA256: sum(whole)})
	must(t, err)
	if got, _ := os.ReadFile(filepath.Join(f.data, "chunked/file.bin")); s != sum(whole) || !bytes.Equal(got, whole) {
		t.Errorf("committed %d bytes, sha256 %s", len(got), s)
	}

	must(t, c.Delete("/data/copy", true))
	if _, err := os.Stat(filepath.Join(f.data, "copy")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("recursive delete left %v", err)
	}
	must(t, c.Delete("/data/rel", false)) // the link, not what it points at
	must(t, c.Remove("/data/never-was"))
	if _, err := os.Stat(filepath.Join(f.outside, "secret")); err != nil {
		t.Errorf("deleting a link removed its target: %v", err)
	}
	v, err := c.Version(ctx)
	must(t, err)
	if v.Version != "test" || len(v.Roots) != 1 || v.Roots[0] != "/data" {
		t.Errorf("version %+v", v)
	}
}

// TestClientErrors checks that every failure comes back as the error
// pkg/transfer/files or archive would have returned over SFTP, with the
// status the agent answered, and leaves nothing behind.
func TestClientErrors(t *testing.T) {
	f := newFixture(t, Limits{MaxListEntries: 100})
	c, ctx := f.c, context.Background()
	must(t, os.WriteFile(filepath.Join(f.data, "exists"), []byte("x"), 0o644))
	must(t, os.MkdirAll(filepath.Join(f.data, "many"), 0o755))
	for i := 0; i < 5; i++ {
		must(t, os.WriteFile(filepath.Join(f.data, "many", strings.Repeat("f", i+1)), nil, 0o644))
	}
	must(t, os.MkdirAll(filepath.Join(f.data, "deep/a/b/c"), 0o755))
	for i := 0; i < 6; i++ {
		must(t, os.WriteFile(filepath.Join(f.data, "deep/a/b/c", strings.Repeat("g", i+1)), nil, 0o644))
	}
	hostileTar := func(name string) io.Reader {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		must(t, tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: 1, Typeflag: tar.TypeReg}))
		tw.Write([]byte("x"))
		tw.Close()
		return &b
	}
	up := func(p, body string, o files.UploadOptions) error {
		_, err := c.Upload(ctx, p, strings.NewReader(body), o)
		return err
	}
	for _, tc := range []struct {
		name   string
		err    error
		status int
		do     func() error
	}{
		{"stat of nothing", os.ErrNotExist, 404, func() error { _, err := c.Stat("/data/nothing"); return err }},
		{"read of nothing", os.ErrNotExist, 404, func() error { _, err := c.Read(ctx, "/data/nothing", 0, 1, 1, io.Discard); return err }},
		{"create over a file", files.ErrExists, 409, func() error { return up("/data/exists", "y", files.UploadOptions{Size: -1, NoClobber: true}) }},
		{"upload onto a directory", files.ErrIsDirectory, 409, func() error { return up("/data/many", "y", files.UploadOptions{Size: -1}) }},
		{"no parent", files.ErrNoParent, 404, func() error { return up("/data/no/such/dir/f", "y", files.UploadOptions{Size: -1}) }},
		{"sha256 mismatch", files.ErrChecksumMismatch, 422, func() error {
			return up("/data/bad-sum", "y", files.UploadOptions{Size: -1, SHA256: sum([]byte("z"))})
		}},
		{"over the limit, unannounced", files.ErrTooLarge, 413, func() error { return up("/data/big", "123456", files.UploadOptions{Size: -1, MaxBytes: 5}) }},
		{"short body", files.ErrShortBody, 400, func() error { return up("/data/short", "123", files.UploadOptions{Size: 10}) }},
		{"listing over the cap", files.ErrTooManyEntries, 413, func() error { _, err := c.List(ctx, "/data/many", 4); return err }},
		{"listing a file", files.ErrNotDirectory, 409, func() error { _, err := c.List(ctx, "/data/exists", 0); return err }},
		{"tar over the cap at its top", archive.ErrTooMany, 413, func() error {
			_, err := c.WriteTar(ctx, "/data/many", io.Discard, archive.WriteOptions{MaxEntries: 3})
			return err
		}},
		{"tar over the cap after it started (trailer)", archive.ErrTooMany, 413, func() error {
			var b bytes.Buffer
			_, err := c.WriteTar(ctx, "/data/deep", &b, archive.WriteOptions{MaxEntries: 5})
			if b.Len() == 0 {
				t.Errorf("the tar did not start")
			}
			return err
		}},
		{"hostile tar", archive.ErrUnsafePath, 400, func() error {
			_, err := c.ExtractTar(ctx, "/data", hostileTar("../outside/x"), false, archive.ExtractOptions{})
			return err
		}},
		{"tar through a link", archive.ErrThroughSymlink, 400, func() error {
			_, err := c.ExtractTar(ctx, "/data", hostileTar("rel/x"), false, archive.ExtractOptions{})
			return err
		}},
		{"tar create over a file", archive.ErrExists, 409, func() error {
			_, err := c.ExtractTar(ctx, "/data", hostileTar("exists"), false, archive.ExtractOptions{NoClobber: true})
			return err
		}},
		{"tar over its size", archive.ErrTooLarge, 413, func() error {
			_, err := c.ExtractTar(ctx, "/data", hostileTar("ok"), false, archive.ExtractOptions{MaxBytes: 100})
			return err
		}},
		{"tar into a file", files.ErrNotDirectory, 409, func() error {
			_, err := c.ExtractTar(ctx, "/data/exists", hostileTar("x"), false, archive.ExtractOptions{})
			return err
		}},
		{"commit short", files.ErrShortBody, 400, func() error {
			if _, err := c.WriteChunk(ctx, "/data/c1", "id1", 0, 10, false, strings.NewReader("12345"), nil); err != nil {
				return err
			}
			_, err := c.CommitChunks(ctx, "/data/c1", "id1", files.CommitOptions{Size: 10})
			return err
		}},
		{"commit with the wrong sha256", files.ErrChecksumMismatch, 422, func() error {
			if _, err := c.WriteChunk(ctx, "/data/c2", "id2", 0, 5, false, strings.NewReader("12345"), nil); err != nil {
				return err
			}
			_, err := c.CommitChunks(ctx, "/data/c2", "id2", files.CommitOptions{Size: 5, SHA256: sum([]byte("54321"))})
			return err
		}},
		{"chunk past the size", files.ErrTooLarge, 413, func() error {
			_, err := c.WriteChunk(ctx, "/data/c3", "id3", 0, 3, false, strings.NewReader("12345"), nil)
			return err
		}},
		{"chunk id with a separator", ErrBadRequest, 400, func() error {
			_, err := c.WriteChunk(ctx, "/data/c4", "../../x", 0, 3, false, strings.NewReader("123"), nil)
			return err
		}},
		{"delete a root", files.ErrRemoveRoot, 400, func() error { return c.Delete("/data", true) }},
		{"delete of nothing", os.ErrNotExist, 404, func() error { return c.Delete("/data/nothing", false) }},
		{"outside the roots", os.ErrPermission, 403, func() error { _, err := c.Stat("/etc/passwd"); return err }},
		{"a link out", ErrOutsideRoots, 403, func() error { _, err := c.Read(ctx, "/data/relfile", 0, 1, 1, io.Discard); return err }},
		{"relative", ErrBadRequest, 400, func() error { _, err := c.Stat("data/x"); return err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := f.snapshot(t)
			err := tc.do()
			if !errors.Is(err, tc.err) {
				t.Fatalf("got %v, want %v", err, tc.err)
			}
			var ae *Error
			if !errors.As(err, &ae) || ae.Status != tc.status {
				t.Errorf("status %+v, want %d", ae, tc.status)
			}
			if archive.IsRefused(tc.err) && !archive.IsRefused(err) {
				t.Errorf("%v is not an archive refusal to the handlers", err)
			}
			assertNoTemps(t, f.data)
			if after := f.snapshot(t); !equalMaps(before, after) {
				t.Errorf("outside the root changed")
			}
		})
	}
}

// assertNoTemps finds no temporary upload file left under dir (a failed
// chunked upload's file goes with its commit).
func assertNoTemps(t *testing.T, dir string) {
	t.Helper()
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && (strings.HasPrefix(d.Name(), files.TempPrefix) || strings.Contains(d.Name(), archive.TempMarker)) &&
			!strings.Contains(d.Name(), "id3") { // a chunk too long stays for its record
			t.Errorf("left behind: %s", p)
		}
		return nil
	})
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestTokenAndPinning: a missing or wrong token is 401 with nothing said;
// a client that does not trust the agent's certificate, or expects another
// name, never sends its token.
func TestTokenAndPinning(t *testing.T) {
	f := newFixture(t, Limits{})
	for name, hdr := range map[string]string{
		"missing":       "",
		"wrong":         "Bearer nope",
		"prefix":        "Bearer " + testToken[:5],
		"longer":        "Bearer " + testToken + "x",
		"basic":         "Basic " + testToken,
		"no scheme":     testToken,
		"lower case":    "bearer " + testToken,
		"empty bearer":  "Bearer ",
		"double bearer": "Bearer Bearer " + testToken,
		"two spaces":    "Bearer  " + testToken,
	} {
		t.Run(name, func(t *testing.T) {
			for _, ep := range []string{PathStat, PathFile, PathList, PathTar, PathVersion, PathCommit, "/v1/nothing", "/"} {
				req, _ := http.NewRequest(http.MethodGet, f.srv.URL+ep+"?path=/data/relfile", nil)
				if hdr != "" {
					req.Header.Set("Authorization", hdr)
				}
				resp, err := f.srv.Client().Do(req)
				must(t, err)
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized || len(b) != 0 {
					t.Errorf("%s: %d %q; want 401 and no body", ep, resp.StatusCode, b)
				}
			}
		})
	}
	if _, err := f.client(t, "wrong").Stat("/data"); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("a client with the wrong token: %v", err)
	}
	// The health check needs no token and says nothing else.
	resp, err := f.srv.Client().Get(f.srv.URL + PathHealthz)
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("healthz: %d", resp.StatusCode)
	}

	other, _ := selfSigned(t)
	for name, cfg := range map[string]ClientConfig{
		"another CA":   {CAPEM: other, ServerName: agentName},
		"another name": {CAPEM: f.caPEM, ServerName: "someone.else"},
	} {
		cfg.Address, cfg.Token = f.srv.Listener.Addr().String(), testToken
		c, err := NewClient(cfg)
		must(t, err)
		if _, err := c.Stat("/data"); err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("%s: %v, want a certificate error", name, err)
		}
		c.Close()
	}
	if _, err := NewClient(ClientConfig{Address: "x:1", Token: "t"}); err == nil {
		t.Errorf("a client without the agent's CA was made (it would trust the system roots)")
	}
}

// TestSweepRemovesOnlyOldTemporaryFiles follows files.Sweep's rules.
func TestSweepRemovesOnlyOldTemporaryFiles(t *testing.T) {
	f := newFixture(t, Limits{})
	old := time.Now().Add(-2 * time.Hour)
	mk := func(rel string, age time.Time) string {
		p := filepath.Join(f.data, rel)
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		must(t, os.WriteFile(p, []byte("x"), 0o644))
		must(t, os.Chtimes(p, age, age))
		return p
	}
	stale := mk("up/"+files.TempPrefix+"0123456789ab-file", old)
	fresh := mk("up/"+files.TempPrefix+"ba9876543210-file", time.Now())
	mine := mk("up/"+files.TempPrefix+"not-a-temp", old)
	deep := mk("up/sub/.x"+archive.TempMarker+"0123456789abcdef", old)
	removed, err := f.c.Sweep(context.Background(), []files.SweepRoot{{Dir: "/data/up", Recursive: true}, {Dir: "/data/rel"}, {Dir: "/etc"}},
		files.SweepOptions{OlderThan: time.Now().Add(-time.Hour)})
	must(t, err)
	sort.Strings(removed)
	if want := []string{"/data/up/" + filepath.Base(stale), "/data/up/sub/" + filepath.Base(deep)}; strings.Join(removed, ",") != strings.Join(want, ",") {
		t.Errorf("removed %v, want %v", removed, want)
	}
	for _, p := range []string{fresh, mine} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s was removed", p)
		}
	}
}

// TestIdleUploadIsCut: a body that stops moving is cut after the idle
// timeout, and its temporary file goes.
func TestIdleUploadIsCut(t *testing.T) {
	f := newFixture(t, Limits{})
	f.h.idle = 300 * time.Millisecond
	pr, pw := io.Pipe()
	defer pw.Close()
	go pw.Write([]byte("the start, then nothing"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := f.c.Upload(ctx, "/data/stalled", pr, files.UploadOptions{Size: -1})
	if err == nil || ctx.Err() != nil {
		t.Fatalf("a stalled upload ended with %v (context: %v); want the agent to cut it", err, ctx.Err())
	}
	assertNoTemps(t, f.data)
	if _, err := os.Stat(filepath.Join(f.data, "stalled")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the stalled upload left its target: %v", err)
	}
}

// TestErrorStatuses pins the statuses wukong-apiserver maps from: the
// kernel's words too.
func TestErrorStatuses(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		is     error
	}{
		{&os.PathError{Op: "write", Path: "/data/x", Err: syscallENOSPC}, 507, files.ErrDiskFull},
		{&os.PathError{Op: "open", Path: "/data/x", Err: errors.New("path escapes from parent")}, 403, os.ErrPermission},
		{&os.PathError{Op: "open", Path: "/data/x", Err: os.ErrNotExist}, 404, os.ErrNotExist},
		{archive.ErrExists, 409, archive.ErrExists},
		{files.ErrChecksumMismatch, 422, files.ErrChecksumMismatch},
		{files.ErrTooLarge, 413, files.ErrTooLarge},
		{errors.New("anything else"), 500, nil},
	} {
		e := ErrorFor(tc.err)
		if e.Status != tc.status {
			t.Errorf("%v: %d, want %d", tc.err, e.Status, tc.status)
		}
		if tc.is != nil && !errors.Is(e, tc.is) {
			t.Errorf("%v: the client's error %v is not %v", tc.err, e, tc.is)
		}
	}
}

var syscallENOSPC = syscall.ENOSPC

// TestFIFODoesNotHang: a FIFO planted in a root is refused at once, not
// opened and waited on.
func TestFIFODoesNotHang(t *testing.T) {
	f := newFixture(t, Limits{})
	must(t, syscall.Mkfifo(filepath.Join(f.data, "fifo"), 0o644))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := f.c.Read(ctx, "/data/fifo", 0, 10, 10, io.Discard)
	if !errors.Is(err, ErrBadRequest) {
		t.Errorf("read of a FIFO: %v", err)
	}
	if _, _, err := f.c.SHA256(ctx, "/data/fifo"); err == nil || ctx.Err() != nil {
		t.Errorf("sha256 of a FIFO: %v", err)
	}
	if _, err := f.c.List(ctx, "/data/fifo", 0); !errors.Is(err, files.ErrNotDirectory) {
		t.Errorf("listing a FIFO: %v", err)
	}
	st, err := f.c.WriteTar(ctx, "/data", io.Discard, archive.WriteOptions{})
	if err != nil || st.Skipped != 1 {
		t.Errorf("a tar with a FIFO: %v, %+v", err, st)
	}
}
