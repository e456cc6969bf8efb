package standin

import (
	"archive/tar"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The token and the tar extraction without a control plane: what the
// integration test cannot reach (an expired token, hostile archives).

func TestUploadToken(t *testing.T) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u := &Uploads{signingKey: key}
	now := time.Now()
	tok, err := u.signToken("ns1", "disk", now)
	if err != nil {
		t.Fatal(err)
	}
	if !authHeaderMatcher.MatchString("Bearer " + tok) {
		t.Fatalf("token %q is not in CDI's bearer charset", tok)
	}
	c, err := u.verifyToken(tok, now.Add(time.Minute))
	if err != nil || c.Namespace != "ns1" || c.Name != "disk" || c.Operation != "Upload" || c.Resource.Resource != "persistentvolumeclaims" {
		t.Fatalf("verify: %+v, %v", c, err)
	}
	if _, err := u.verifyToken(tok, now.Add(tokenTTL+tokenLeeway+time.Second)); err == nil {
		t.Error("an expired token was accepted")
	}
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	if _, err := (&Uploads{signingKey: other}).verifyToken(tok, now); err == nil {
		t.Error("a token signed by another key was accepted")
	}
	parts := strings.Split(tok, ".")
	swapped, _ := u.signToken("ns2", "disk", now)
	if _, err := u.verifyToken(parts[0]+"."+strings.Split(swapped, ".")[1]+"."+parts[2], now); err == nil {
		t.Error("claims swapped under a signature were accepted")
	}
}

func TestExtractTar(t *testing.T) {
	type entry struct {
		name, body, link string
		typ              byte
	}
	build := func(entries ...entry) []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, e := range entries {
			h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: 0o644, Size: int64(len(e.body))}
			if e.typ == 0 {
				h.Typeflag = tar.TypeReg
			}
			if err := tw.WriteHeader(h); err != nil {
				t.Fatal(err)
			}
			_, _ = tw.Write([]byte(e.body))
		}
		_ = tw.Close()
		return buf.Bytes()
	}
	for name, tc := range map[string]struct {
		tar    []byte
		refuse string            // a regexp the error matches; empty for success
		want   map[string]string // on success: files and what they hold
	}{
		"dotdot":             {tar: build(entry{name: "a/../../x", body: "x"}), refuse: "outside"},
		"absolute":           {tar: build(entry{name: "/etc/x", body: "x"}), refuse: "outside"},
		"symlink out":        {tar: build(entry{name: "l", link: "../../etc", typ: tar.TypeSymlink}), refuse: "outside"},
		"absolute symlink":   {tar: build(entry{name: "l", link: "/etc", typ: tar.TypeSymlink}), refuse: "absolute"},
		"through a symlink":  {tar: build(entry{name: "d/", typ: tar.TypeDir}, entry{name: "l", link: "d", typ: tar.TypeSymlink}, entry{name: "l/x", body: "x"}), refuse: "symlink"},
		"hard link out":      {tar: build(entry{name: "h", link: "../x", typ: tar.TypeLink}), refuse: "outside"},
		"hard link":          {tar: build(entry{name: "f", body: "x"}, entry{name: "h", link: "f", typ: tar.TypeLink}), want: map[string]string{"h": "x"}},
		"symlink inside":     {tar: build(entry{name: "d/f", body: "x"}, entry{name: "d/l", link: "../d/f", typ: tar.TypeSymlink}), want: map[string]string{"d/l": "x"}},
		"later entry wins":   {tar: build(entry{name: "f", body: "1"}, entry{name: "./f", body: "2"}), want: map[string]string{"f": "2"}},
		"dot root and files": {tar: build(entry{name: "./", typ: tar.TypeDir}, entry{name: "./a/b/c", body: "deep"}), want: map[string]string{"a/b/c": "deep"}},
	} {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			err := extractTar(bytes.NewReader(tc.tar), root)
			if tc.refuse == "" {
				if err != nil {
					t.Fatal(err)
				}
				for f, want := range tc.want {
					if b, err := os.ReadFile(filepath.Join(root, f)); err != nil || string(b) != want {
						t.Errorf("%s: %q, %v; want %q", f, b, err, want)
					}
				}
				return
			}
			if err == nil || !regexp.MustCompile(tc.refuse).MatchString(err.Error()) {
				t.Fatalf("want an error matching %q, got %v", tc.refuse, err)
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(root), "x")); err == nil {
				t.Fatal("wrote outside root")
			}
		})
	}
}
