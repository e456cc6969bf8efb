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

package transfers

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/novasphere/wukong/pkg/apis/vm/hashstate"
)

// The states kept in one pass, and those hashed on between steps, are
// the states of hashing the file's first bytes at once.
func TestFileStates(t *testing.T) {
	content := make([]byte, 10_000)
	_, _ = rand.Read(content)
	p := filepath.Join(t.TempDir(), "f")
	require.NoError(t, os.WriteFile(p, content, 0o600))
	f, err := os.Open(p)
	require.NoError(t, err)
	defer f.Close()

	s, err := hashFile(f, int64(len(content)), 3000)
	require.NoError(t, err)
	whole := sha256.Sum256(content)
	require.Equal(t, hex.EncodeToString(whole[:]), s.sum)
	require.Len(t, s.states, 4) // 0, 3000, 6000, 9000
	for _, off := range []int{0, 1, 3000, 4500, 9000, 9999, 10_000} {
		got, err := s.at(context.Background(), int64(off))
		require.NoError(t, err)
		h := sha256.New()
		h.Write(content[:off])
		want, _ := hashstate.Encode(h)
		require.Equal(t, want, got, "offset %d", off)
	}
	_, err = s.at(context.Background(), 10_001)
	require.Error(t, err)

}
