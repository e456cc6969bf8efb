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
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCompletion drives cobra's __complete, which kubectl_complete-wukong
// calls: the lines before the ":<directive>" line are the candidates.
func TestCompletion(t *testing.T) {
	f, _ := vmWith(t, map[string][]byte{"/etc/hosts": []byte("x"), "/etc/ssh/": nil, "/var/": nil})
	f.addVM(fakeNS, "db")
	f.addVM("other", "vm1")
	f.addDisk(fakeNS, "vm1", "system", nil)
	f.addDisk(fakeNS, "vm1", "data", nil)
	for _, tc := range []struct {
		name string
		args []string
		want []string
		dir  string
	}{
		{"wukong names", []string{"cp", "v"}, []string{"vm1:"}, ":6"},
		{"all wukongs", []string{"ls", ""}, []string{"db:", "vm1:"}, ":6"},
		{"another namespace", []string{"ls", "other/"}, []string{"other/vm1:"}, ":6"},
		{"the root", []string{"ls", "vm1:"}, []string{"vm1:/etc/", "vm1:/var/"}, ":6"},
		{"a directory's entries", []string{"rm", "vm1:/etc/"}, []string{"vm1:/etc/hosts", "vm1:/etc/ssh/"}, ":6"},
		{"a prefix", []string{"cp", "vm1:/etc/h"}, []string{"vm1:/etc/hosts"}, ":6"},
		{"a local file for cp", []string{"cp", "./nothing-like-a-vm"}, nil, ":0"},
		{"disks", []string{"export", "vm1-"}, []string{"vm1-data", "vm1-system"}, ":4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := f.run(nil, append([]string{"__complete"}, tc.args...)...)
			require.NoError(t, err)
			lines := strings.Split(strings.TrimSpace(out), "\n")
			require.NotEmpty(t, lines)
			assert.ElementsMatch(t, tc.want, lines[:len(lines)-1])
			assert.Equal(t, tc.dir, lines[len(lines)-1], "directive")
		})
	}
}
