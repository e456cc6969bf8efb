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

package testutil

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// ExtractTar against hostile archives and the entries tar allows.
func TestExtractTar(t *testing.T) {
	for name, tc := range map[string]struct {
		tar    []byte
		refuse string            // a regexp the error matches; empty for success
		want   map[string]string // on success: files and what they hold
	}{
		"dotdot":             {tar: Tar(t, TarEntry{Name: "a/../../x", Body: "x"}), refuse: "outside"},
		"absolute":           {tar: Tar(t, TarEntry{Name: "/etc/x", Body: "x"}), refuse: "outside"},
		"symlink out":        {tar: Tar(t, TarEntry{Name: "l", Link: "../../etc", Type: tar.TypeSymlink}), refuse: "outside"},
		"absolute symlink":   {tar: Tar(t, TarEntry{Name: "l", Link: "/etc", Type: tar.TypeSymlink}), refuse: "absolute"},
		"through a symlink":  {tar: Tar(t, TarEntry{Name: "d/", Type: tar.TypeDir}, TarEntry{Name: "l", Link: "d", Type: tar.TypeSymlink}, TarEntry{Name: "l/x", Body: "x"}), refuse: "symlink"},
		"hard link out":      {tar: Tar(t, TarEntry{Name: "h", Link: "../x", Type: tar.TypeLink}), refuse: "outside"},
		"hard link":          {tar: Tar(t, TarEntry{Name: "f", Body: "x"}, TarEntry{Name: "h", Link: "f", Type: tar.TypeLink}), want: map[string]string{"h": "x"}},
		"symlink inside":     {tar: Tar(t, TarEntry{Name: "d/f", Body: "x"}, TarEntry{Name: "d/l", Link: "../d/f", Type: tar.TypeSymlink}), want: map[string]string{"d/l": "x"}},
		"later entry wins":   {tar: Tar(t, TarEntry{Name: "f", Body: "1"}, TarEntry{Name: "./f", Body: "2"}), want: map[string]string{"f": "2"}},
		"dot root and files": {tar: Tar(t, TarEntry{Name: "./", Type: tar.TypeDir}, TarEntry{Name: "./a/b/c", Body: "deep"}), want: map[string]string{"a/b/c": "deep"}},
	} {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			err := ExtractTar(bytes.NewReader(tc.tar), root)
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
