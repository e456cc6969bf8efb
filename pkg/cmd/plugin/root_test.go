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
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
)

// TestGlobalFlags: the flags every subcommand shares are checked before
// any request, and the kubeconfig's credentials reach the server.
func TestGlobalFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		err  string
	}{
		{"chunk size zero", []string{"--chunk-size", "0", "rm", "vm1:/x"}, "--chunk-size must be positive"},
		{"bad limit rate", []string{"--limit-rate", "fast", "rm", "vm1:/x"}, `--limit-rate "fast"`},
		{"bad profile", []string{"--profile", "heap", "rm", "vm1:/x"}, `--profile "heap": only none and cpu are supported`},
		{"no such context", []string{"--context", "nope", "rm", "vm1:/x"}, `context "nope" does not exist`},
		{"unknown command", []string{"mv", "vm1:/x", "vm1:/y"}, `unknown command "mv"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, root := vmWith(t, map[string][]byte{"/x": []byte("x")})
			_, _, err := f.run(nil, tc.args...)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.err)
			assert.Empty(t, f.calls())
			assert.FileExists(t, filepath.Join(root, "x"))
		})
	}
}

func TestWrongToken(t *testing.T) {
	f, _ := vmWith(t, map[string][]byte{"/x": []byte("x")})
	_, _, err := f.run(nil, "--token", "stolen", "ls", "vm1:/x")
	require.Error(t, err)
	assert.Equal(t, "no token", err.Error())
	assert.Empty(t, f.calls(), "refused before the API")
}

// TestLimitRateAndProfile: --limit-rate paces the chunks without changing
// what arrives; --profile cpu writes a profile.
func TestLimitRateAndProfile(t *testing.T) {
	want := payload(5000)
	f, _ := vmWith(t, map[string][]byte{"/data/big.bin": want})
	dir := t.TempDir()
	prof := filepath.Join(dir, "cpu.pprof")
	_, _, err := f.run(nil, "--chunk-size", "1Ki", "--limit-rate", "1Mi", "--profile", "cpu", "--profile-output", prof,
		"cp", "vm1:/data/big.bin", filepath.Join(dir, "big.bin"))
	require.NoError(t, err)
	assert.Equal(t, want, readFile(t, filepath.Join(dir, "big.bin")))
	fi, err := os.Stat(prof)
	require.NoError(t, err)
	assert.Positive(t, fi.Size())
}

func TestTransfersForbidden(t *testing.T) {
	f := newFakeAPI(t)
	f.failing("GET "+records, 1, apierrors.NewForbidden(v1alpha1.Resource("wukongfiletransfers"), "", errors.New(`User "tester" cannot list`)))
	_, _, err := f.run(nil, "transfers")
	require.Error(t, err)
	assert.True(t, apierrors.IsForbidden(err), "%v", err)
	assert.Contains(t, err.Error(), `User "tester" cannot list`)
}
