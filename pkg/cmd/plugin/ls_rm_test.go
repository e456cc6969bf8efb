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
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
)

func lsVM(t *testing.T) (*fakeAPI, string) {
	f, root := vmWith(t, map[string][]byte{"/etc/hosts": []byte("127.0.0.1 localhost\n"), "/etc/ssh/": nil, "/etc/motd": payload(12345)})
	require.NoError(t, os.Symlink("hosts", filepath.Join(root, "etc/hosts.link")))
	require.NoError(t, os.Chmod(filepath.Join(root, "etc/ssh"), 0o755))
	require.NoError(t, os.Chmod(filepath.Join(root, "etc/hosts"), 0o644))
	require.NoError(t, os.Chmod(filepath.Join(root, "etc/motd"), 0o600))
	return f, root
}

func TestLs(t *testing.T) {
	for _, tc := range []struct {
		name  string
		args  []string
		out   string
		calls []string
	}{
		{"directory", []string{"vm1:/etc"}, "" +
			"-rw-r--r--   20      2024-05-06 07:08   hosts\n" +
			"Lrwxrwxrwx   5       2024-05-06 07:08   hosts.link -> hosts\n" +
			"-rw-------   12345   2024-05-06 07:08   motd\n" +
			"drwxr-xr-x   4096    2024-05-06 07:08   ssh\n",
			[]string{"GET " + files + "?path=/", "GET " + files + "?path=/etc"}},
		{"file", []string{"vm1:/etc/motd"}, "-rw-------   12345   2024-05-06 07:08   motd\n",
			[]string{"GET " + files + "?path=/etc"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, _ := lsVM(t)
			out, _, err := f.run(nil, append([]string{"ls"}, tc.args...)...)
			require.NoError(t, err)
			assert.Equal(t, tc.out, out)
			assert.Equal(t, tc.calls, f.calls())
		})
	}
}

func TestLsJSON(t *testing.T) {
	f, _ := lsVM(t)
	out, _, err := f.run(nil, "ls", "-o", "json", "vm1:/etc/hosts")
	require.NoError(t, err)
	var l v1alpha1.WukongFileList
	require.NoError(t, json.Unmarshal([]byte(out), &l))
	assert.Equal(t, "/etc", l.Path)
	require.Len(t, l.Items, 1)
	assert.Equal(t, "hosts", l.Items[0].Name)
	assert.Equal(t, "file", l.Items[0].Type)
	assert.Equal(t, int64(20), l.Items[0].Size)

	out, _, err = f.run(nil, "ls", "-o", "json", "vm1:/etc")
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal([]byte(out), &l))
	assert.Equal(t, "/etc", l.Path)
	assert.Len(t, l.Items, 4)
}

func TestLsErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"ls", "vm1:/etc/nope"}, `wukongs/files.vm.novasphere.dev "/etc/nope" not found`},
		{[]string{"ls", "vm1:/nope/x"}, `wukongs/files.vm.novasphere.dev "/nope" not found`},
		{[]string{"ls", "vm9:/etc"}, `wukongs.vm.novasphere.dev "vm9" not found`},
		{[]string{"ls", "-o", "yaml", "vm1:/etc"}, `--output "yaml": use json`},
		{[]string{"ls", "/etc"}, `"/etc" does not name a file in a VM`},
		{[]string{"ls", "vm1:/a", "vm1:/b"}, `accepts 1 arg(s), received 2`},
	} {
		t.Run(tc.err, func(t *testing.T) {
			f, _ := lsVM(t)
			_, _, err := f.run(nil, tc.args...)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.err)
		})
	}
}

func TestRm(t *testing.T) {
	content := map[string][]byte{"/tmp/old.log": []byte("x"), "/tmp/build/out/a.o": []byte("y"), "/tmp/empty/": nil}
	for _, tc := range []struct {
		name  string
		args  []string
		gone  []string
		kept  []string
		calls []string
		err   string
	}{
		{name: "file", args: []string{"vm1:/tmp/old.log"}, gone: []string{"tmp/old.log"},
			calls: []string{"DELETE " + files + "?path=/tmp/old.log"}},
		{name: "several, recursive", args: []string{"-r", "vm1:/tmp/build", "vm1:/tmp/old.log"}, gone: []string{"tmp/build", "tmp/old.log"},
			calls: []string{"DELETE " + files + "?path=/tmp/build&recursive=true", "DELETE " + files + "?path=/tmp/old.log&recursive=true"}},
		{name: "empty directory", args: []string{"vm1:/tmp/empty"}, gone: []string{"tmp/empty"},
			calls: []string{"DELETE " + files + "?path=/tmp/empty"}},
		{name: "full directory without -r", args: []string{"vm1:/tmp/build", "vm1:/tmp/old.log"}, kept: []string{"tmp/build/out/a.o", "tmp/old.log"},
			calls: []string{"DELETE " + files + "?path=/tmp/build"},
			err:   `vm1:/tmp/build: Operation cannot be fulfilled on wukongs/files.vm.novasphere.dev "/tmp/build": directory not empty: use recursive`},
		{name: "missing", args: []string{"ns1/vm1:/tmp/nope"},
			calls: []string{"DELETE " + files + "?path=/tmp/nope"},
			err:   `ns1/vm1:/tmp/nope: wukongs/files.vm.novasphere.dev "/tmp/nope" not found`},
		{name: "not in a VM", args: []string{"/tmp/x"}, err: `"/tmp/x" does not name a file in a VM: write WUKONG:/path or NAMESPACE/WUKONG:/path`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, root := vmWith(t, content)
			_, _, err := f.run(nil, append([]string{"rm"}, tc.args...)...)
			if tc.err == "" {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
				assert.Equal(t, tc.err, err.Error())
			}
			assert.Equal(t, tc.calls, f.calls())
			for _, p := range tc.gone {
				assert.NoFileExists(t, filepath.Join(root, p))
				assert.NoDirExists(t, filepath.Join(root, p))
			}
			for _, p := range tc.kept {
				assert.FileExists(t, filepath.Join(root, p))
			}
		})
	}
}
