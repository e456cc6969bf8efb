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

package files

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/novasphere/wukong/pkg/transfer/archive"
)

// TestIsUploadTemp: only the exact forms of the temporary names Upload and
// Extract make are recognised; names a person could choose that merely look
// alike, and the chunked uploads' files (which their records look after),
// are not.
func TestIsUploadTemp(t *testing.T) {
	for name, want := range map[string]bool{
		// What Upload makes, short and long targets.
		TempName(TempPrefix+"0123456789ab-", "app.tar.gz"):                true,
		TempName(TempPrefix+randomSuffix()+"-", strings.Repeat("é", 127)): true,
		// What Extract makes.
		".hosts" + archive.TempMarker + "0123456789abcdef":                      true,
		"." + strings.Repeat("x", 64) + archive.TempMarker + "fedcba9876543210": true,
		// Names with a newline or bytes that are not UTF-8.
		TempName(TempPrefix+"0123456789ab-", "\nodd"):         true,
		".a\nb\xff" + archive.TempMarker + "0123456789abcdef": true,
		// A chunked upload's file: its record decides.
		filepath.Base(ChunkTempName("/srv/big.iso", "3f2b8c1e-5d4a-4e6f-9a7b-1c2d3e4f5a6b")): false,
		// Lookalikes.
		".wukong-upload-notes.txt":                             false,
		".wukong-upload-0123456789ab":                          false, // no name after it
		".wukong-upload-0123456789abc-x":                       false, // 13 hex digits
		".wukong-upload-0123456789AB-x":                        false, // upper case
		"wukong-upload-0123456789ab-x":                         false, // no dot
		"x.wukong-upload-0123456789ab-x":                       false,
		".wukong-upload-0123456789ab-":                         false,
		".hosts" + archive.TempMarker + "0123456789abcde":      false, // 15 digits
		".hosts" + archive.TempMarker + "0123456789abcdef0":    false, // 17 digits
		".hosts" + archive.TempMarker + "0123456789abcdeg":     false,
		archive.TempMarker + "0123456789abcdef":                false, // no name before it
		"hosts" + archive.TempMarker + "0123456789abcdef":      false, // no leading dot
		".hosts" + archive.TempMarker + "0123456789abcdef.bak": false,
		"notes.txt": false,
	} {
		assert.Equal(t, want, IsUploadTemp(name), "%q", name)
	}
}

// TestSweep: old temporary files of uploads go, in the directories given
// (and below a recursive root); young ones, lookalikes, chunk files,
// directories and everything outside the roots stay.
func TestSweep(t *testing.T) {
	c := hostSFTP(t)
	base := t.TempDir()
	old := time.Now().Add(-2 * time.Hour)
	mk := func(rel string, mtime time.Time) string {
		p := filepath.Join(base, rel)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte("x"), 0o644))
		require.NoError(t, os.Chtimes(p, mtime, mtime))
		return p
	}
	plain := TempName(TempPrefix+"0123456789ab-", "app.tar.gz")
	tarTemp := ".hosts" + archive.TempMarker + "0123456789abcdef"
	chunk := filepath.Base(ChunkTempName("/x/big.iso", "3f2b8c1e-5d4a-4e6f-9a7b-1c2d3e4f5a6b"))
	gone := []string{
		mk("srv/"+plain, old),
		mk("tar/"+tarTemp, old),
		mk("tar/sub/deep/"+tarTemp, old),
	}
	require.NoError(t, os.Symlink("hosts", filepath.Join(base, "tar/sub/.l"+archive.TempMarker+"00112233445566ff")))
	kept := []string{
		mk("srv/"+TempName(TempPrefix+"ba9876543210-", "young"), time.Now()),
		mk("srv/.wukong-upload-notes.txt", old),
		mk("srv/.wukong-upload-0123456789abc-x", old),
		mk("srv/"+chunk, old),
		mk("srv/app.tar.gz", old),
		mk("srv/sub/"+plain, old),   // srv is not recursive
		mk("elsewhere/"+plain, old), // not a root
		mk("tar/.hosts.wukong-tmp-1", old),
	}
	require.NoError(t, os.Mkdir(filepath.Join(base, "srv", TempName(TempPrefix+"00000000000a-", "dir")), 0o755))
	// A link that could lead the walk out of its root.
	require.NoError(t, os.Symlink(filepath.Join(base, "elsewhere"), filepath.Join(base, "tar/out")))

	removed, err := Sweep(context.Background(), c, []SweepRoot{
		{Dir: filepath.Join(base, "srv")},
		{Dir: filepath.Join(base, "tar"), Recursive: true},
		{Dir: filepath.Join(base, "missing"), Recursive: true},
	}, SweepOptions{OlderThan: time.Now().Add(-time.Hour)})
	require.NoError(t, err)
	// The symbolic link staged by Extract is as young as the test; it stays.
	sort.Strings(gone)
	sort.Strings(removed)
	assert.Equal(t, gone, removed)
	for _, p := range gone {
		_, err := os.Lstat(p)
		assert.True(t, os.IsNotExist(err), p)
	}
	for _, p := range kept {
		_, err := os.Lstat(p)
		assert.NoError(t, err, p)
	}

	t.Run("budget", func(t *testing.T) {
		p := mk("b/"+plain, old)
		removed, err := Sweep(context.Background(), c, []SweepRoot{{Dir: filepath.Join(base, "b")}}, SweepOptions{OlderThan: time.Now(), MaxEntries: 0})
		require.NoError(t, err)
		assert.Equal(t, []string{p}, removed)
		mk("b/"+plain, old)
		mk("b/other", old)
		removed, err = Sweep(context.Background(), c, []SweepRoot{{Dir: filepath.Join(base, "b")}}, SweepOptions{OlderThan: time.Now(), MaxEntries: 1})
		require.NoError(t, err)
		assert.Empty(t, removed, "a directory over the budget is left for later")
	})
}
