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

package plugin_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// TestCpUploadResumeAfterEdit: a file edited between an interrupted upload
// and its --resume, keeping its size and mtime, is not continued under the
// old record (which would commit the old version's first chunks with the
// new version's last ones): the state the record's hash chain reached is
// not the new file's at that offset, so a new transfer sends the whole new
// version.
func TestCpUploadResumeAfterEdit(t *testing.T) {
	before := payload(5000)
	f, root := vmWith(t, map[string][]byte{"/data/": nil})
	src := filepath.Join(t.TempDir(), "big.bin")
	require.NoError(t, os.WriteFile(src, before, 0o644))
	mtime := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	require.NoError(t, os.Chtimes(src, mtime, mtime))
	args := []string{"--chunk-size", "1Ki", "--parallel", "1", "--retries", "0", "cp", src, "vm1:/data/big.bin"}

	f.failing("offset=2048", 1, apierrors.NewServiceUnavailable("the VM went away"))
	_, _, err := f.run(nil, args...)
	require.Error(t, err)

	// The same size and mtime, other bytes: only the content tells.
	after := slices.Clone(before)
	for i := range after {
		after[i] ^= 0x5a
	}
	require.NoError(t, os.WriteFile(src, after, 0o644))
	require.NoError(t, os.Chtimes(src, mtime, mtime))

	n := len(f.calls())
	_, _, err = f.run(nil, append(args, "--resume")...)
	require.NoError(t, err)
	assert.Equal(t, after, readFile(t, filepath.Join(root, "data/big.bin")), "the new version, whole")
	again := f.calls()[n:]
	created := slices.DeleteFunc(slices.Clone(again), func(c string) bool { return !strings.HasPrefix(c, "POST "+records) })
	assert.Len(t, created, 1, "a new record for the new content")
	var offsets []string
	for _, c := range again {
		if i := strings.Index(c, "offset="); i >= 0 && strings.HasPrefix(c, "PUT") {
			offsets = append(offsets, strings.SplitN(c[i:], "&", 2)[0])
		}
	}
	assert.Equal(t, []string{"offset=0", "offset=1024", "offset=2048", "offset=3072", "offset=4096"}, offsets)
}
