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

package remotepath

import (
	"errors"
	"path"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestClean(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr string
	}{
		{in: "/", want: "/"},
		{in: "/var/log", want: "/var/log"},
		{in: "/var/log/", want: "/var/log"},
		{in: "//var//log//", want: "/var/log"},
		{in: "/var/./log/../lib", want: "/var/lib"},
		{in: "/..", want: "/"},
		{in: "/../../etc", want: "/etc"},
		{in: `/c:\windows`, want: `/c:\windows`},
		{in: "", wantErr: "empty"},
		{in: "var/log", wantErr: "relative"},
		{in: ".", wantErr: "relative"},
		{in: "..", wantErr: "relative"},
		{in: "./etc", wantErr: "relative"},
		{in: "~/x", wantErr: "relative"},
		{in: `\etc\passwd`, wantErr: "relative"},
		{in: "/etc/passwd\x00.txt", wantErr: "NUL"},
		{in: "\x00", wantErr: "NUL"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Clean(tt.in)
			if tt.wantErr != "" {
				var perr *Error
				require.ErrorAs(t, err, &perr)
				assert.Equal(t, tt.in, perr.Path)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestWithin(t *testing.T) {
	tests := []struct {
		root, p string
		want    bool
	}{
		{"/data", "/data", true},
		{"/data", "/data/", true},
		{"/data", "/data/x", true},
		{"/data/", "/data/x/y", true},
		{"/data", "/data2", false},
		{"/data", "/data2/x", false},
		{"/data", "/dat", false},
		{"/data", "/", false},
		{"/data", "/data/../etc", false},
		{"/data", "/data/x/../../data/y", true},
		{"/", "/", true},
		{"/", "/etc", true},
		{"/data", "data/x", false},
		{"data", "data/x", false},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, Within(tt.root, tt.p), "Within(%q, %q)", tt.root, tt.p)
	}
}

func TestJoin(t *testing.T) {
	ok := []struct {
		root, name, want string
	}{
		{"/data", "a", "/data/a"},
		{"/data", "a/b/c.txt", "/data/a/b/c.txt"},
		{"/data", "a/", "/data/a"},
		{"/data", "./a", "/data/a"},
		{"/data", ".", "/data"},
		{"/data", "./", "/data"},
		{"/data", "a/..", "/data"},
		{"/data", "a/../b", "/data/b"},
		{"/data", "a//b", "/data/a/b"},
		{"/data", "a/./b/", "/data/a/b"},
		{"/data", "...", "/data/..."},
		{"/data", "..a", "/data/..a"},
		{"/data", "a..", "/data/a.."},
		{"/data", ".hidden", "/data/.hidden"},
		{"/data", `..\..\etc`, `/data/..\..\etc`}, // a backslash is an ordinary byte on POSIX
		{"/data", "a b/ü.txt", "/data/a b/ü.txt"},
		{"/data/", "x", "/data/x"},
		{"/data/sub/..", "x", "/data/x"},
		{"/", "etc/passwd", "/etc/passwd"},
	}
	for _, tt := range ok {
		t.Run("ok "+tt.root+" "+tt.name, func(t *testing.T) {
			got, err := Join(tt.root, tt.name)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}

	hostile := []struct {
		root, name, wantErr string
	}{
		{"/data", "", "empty"},
		{"/data", "/etc/passwd", "absolute"},
		{"/data", "/data/x", "absolute"}, // even when it would land inside: archives are relative
		{"/data", "//etc", "absolute"},
		{"/data", "/", "absolute"},
		{"/data", "..", "climbs out"},
		{"/data", "../", "climbs out"},
		{"/data", "../etc/passwd", "climbs out"},
		{"/data", "../data2/x", "climbs out"},
		{"/data", "../data", "climbs out"},
		{"/data", "a/../../etc", "climbs out"},
		{"/data", "a/b/../../../etc", "climbs out"},
		{"/data", "./../etc", "climbs out"},
		{"/data", "a/./../.././etc", "climbs out"},
		{"/data", strings.Repeat("../", 50) + "etc/shadow", "climbs out"},
		{"/data", "a\x00b", "NUL"},
		{"/data", "\x00", "NUL"},
		{"/data", "../\x00", "NUL"},
		{"relative", "x", "relative"},
		{"", "x", "empty"},
		{"/da\x00ta", "x", "NUL"},
	}
	for _, tt := range hostile {
		t.Run("refused "+tt.root+" "+tt.name, func(t *testing.T) {
			got, err := Join(tt.root, tt.name)
			var perr *Error
			require.ErrorAs(t, err, &perr, "Join(%q, %q) = %q", tt.root, tt.name, got)
			assert.Contains(t, err.Error(), tt.wantErr)
			assert.Empty(t, got)
		})
	}
}

func TestLinkTargetOK(t *testing.T) {
	tests := []struct {
		link, target string
		want         bool
	}{
		{"/data/l", "a", true},
		{"/data/l", "./a", true},
		{"/data/l", "a/b/c", true},
		{"/data/l", ".", true},
		{"/data/sub/l", "..", true}, // the destination itself
		{"/data/sub/l", "../x", true},
		{"/data/a/b/l", "../../x", true},
		{"/data/a/b/l", "../../../data/x", false}, // leaves then re-enters: refuse, the guest would resolve /data's parent
		{"/data/l", "/data/x", true},
		{"/data/l", "/data", true},
		{"/data/l", "/data/a/../b", false}, // ".." after a name
		{"/data/l", "/../data/x", true},    // "/.." is "/"
		{"/data/l", "/../etc", false},

		{"/data/l", "", false},
		{"/data/l", "..", false},
		{"/data/l", "../x", false},
		{"/data/l", "../data2/x", false},
		{"/data/sub/l", "../../etc/passwd", false},
		{"/data/l", "/etc/passwd", false},
		{"/data/l", "/data2", false},
		{"/data/l", "/", false},
		{"/data/l", "a/../../etc", false},
		{"/data/l", "a/..", false}, // inside lexically, but "a" may be a link
		{"/data/l", "a/b/../c", false},
		{"/data/l", "x\x00", false},
		{"/data", "x", false},          // a link cannot replace the root
		{"/etc/l", "x", false},         // the link itself is outside
		{"/data/../etc/l", "x", false}, // ... once cleaned
		{"l", "x", false},              // relative link path
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, LinkTargetOK("/data", tt.link, tt.target), "LinkTargetOK(/data, %q, %q)", tt.link, tt.target)
	}
	assert.False(t, LinkTargetOK("data", "data/l", "x"), "relative root")
	assert.True(t, LinkTargetOK("/", "/l", "/etc/passwd"), "everything is within /")
}

// FuzzJoin checks Join's contract on arbitrary input: either an *Error, or a
// clean absolute path within the cleaned root that, for a name without "..",
// is exactly root + "/" + cleaned name.
func FuzzJoin(f *testing.F) {
	for _, seed := range []struct{ root, name string }{
		{"/data", "a/b"}, {"/data", "../x"}, {"/data", "a/../../x"}, {"/data", "/etc"},
		{"/", "x"}, {"/data/", "."}, {"/data", "a\x00"}, {"/data", ""}, {"x", "y"},
		{"/data", "..."}, {"/data", "./.././../data2"}, {"//", "//"},
	} {
		f.Add(seed.root, seed.name)
	}
	f.Fuzz(func(t *testing.T, root, name string) {
		got, err := Join(root, name)
		if err != nil {
			var perr *Error
			if !errors.As(err, &perr) {
				t.Fatalf("Join(%q, %q): error %v is not a *remotepath.Error", root, name, err)
			}
			if got != "" {
				t.Fatalf("Join(%q, %q) returned %q with error %v", root, name, got, err)
			}
			return
		}
		croot := path.Clean(root)
		if !path.IsAbs(got) || path.Clean(got) != got {
			t.Fatalf("Join(%q, %q) = %q: not a clean absolute path", root, name, got)
		}
		if got != croot && !strings.HasPrefix(got, strings.TrimSuffix(croot, "/")+"/") {
			t.Fatalf("Join(%q, %q) = %q: escapes %q", root, name, got, croot)
		}
		if strings.IndexByte(got, 0) >= 0 {
			t.Fatalf("Join(%q, %q) = %q: contains NUL", root, name, got)
		}
		if path.IsAbs(name) {
			t.Fatalf("Join(%q, %q) = %q: accepted an absolute name", root, name, got)
		}
	})
}

// FuzzLinkTargetOK checks that an accepted link target never resolves,
// lexically, outside root, and that it contains no ".." after a name.
func FuzzLinkTargetOK(f *testing.F) {
	f.Add("/data", "/data/a/l", "../x")
	f.Add("/data", "/data/l", "a/../../x")
	f.Add("/data", "/data/l", "/etc")
	f.Fuzz(func(t *testing.T, root, link, target string) {
		if !LinkTargetOK(root, link, target) {
			return
		}
		resolved := target
		if !path.IsAbs(target) {
			resolved = path.Join(path.Dir(path.Clean(link)), target)
		}
		if !Within(root, resolved) || !Within(root, link) {
			t.Fatalf("LinkTargetOK(%q, %q, %q) accepted a target resolving to %q", root, link, target, resolved)
		}
		seen := false
		for _, e := range strings.Split(target, "/") {
			if e == ".." && seen {
				t.Fatalf("LinkTargetOK(%q, %q, %q) accepted \"..\" after a name", root, link, target)
			}
			if e != "" && e != "." && e != ".." {
				seen = true
			}
		}
	})
}
