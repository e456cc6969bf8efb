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

package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMemoryLimit(t *testing.T) {
	env := func(kv map[string]string) func(string) string {
		return func(k string) string { return kv[k] }
	}
	got, err := memoryLimit(env(map[string]string{containerMemoryLimitEnv: "1073741824"}))
	require.NoError(t, err)
	assert.Equal(t, int64(1073741824/100*80), got, "80% of the container's 1Gi")

	got, err = memoryLimit(env(map[string]string{containerMemoryLimitEnv: "1073741824", "GOMEMLIMIT": "512MiB"}))
	require.NoError(t, err)
	assert.Zero(t, got, "GOMEMLIMIT wins")

	got, err = memoryLimit(env(nil))
	require.NoError(t, err)
	assert.Zero(t, got, "no limit, none set")

	for _, bad := range []string{"1Gi", "-5", "0", "lots"} {
		_, err = memoryLimit(env(map[string]string{containerMemoryLimitEnv: bad}))
		assert.ErrorContains(t, err, containerMemoryLimitEnv, bad)
	}
}

func TestGCPercent(t *testing.T) {
	env := func(kv map[string]string) func(string) string {
		return func(k string) string { return kv[k] }
	}
	assert.Equal(t, gcPercentUnderLimit, gcPercent(env(nil), true), "a memory limit bounds the heap: the GC may let it grow")
	assert.Zero(t, gcPercent(env(nil), false), "no limit: the runtime's default")
	assert.Zero(t, gcPercent(env(map[string]string{"GOGC": "50"}), true), "GOGC wins")
}
