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

package sshpool

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/novasphere/wukong/pkg/transfer/files"
	transferssh "github.com/novasphere/wukong/pkg/transfer/ssh"
	"github.com/novasphere/wukong/test/integration/sshvm"
)

// TestGuestHasher: a guest with a shell and coreutils hashes a file where
// it lies, whatever its name (quotes, spaces, a newline), and says when it
// cannot; a chrooted guest that only runs internal-sftp gives no sum, so
// the commit reads the file back instead (a wrong sum is never taken).
func TestGuestHasher(t *testing.T) {
	priv, authorized, err := sshvm.NewClientKey()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	vm, err := sshvm.Start(ctx, sshvm.Options{Address: "127.0.0.11", AuthorizedKeys: authorized, WorkDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = vm.Stop() })
	shell := &guest{vm: vm, priv: priv}
	p := newPool(t, transferssh.PoolOptions{})
	c := get(t, p, shell.target())
	defer c.Release()
	hash := files.SSHGuestHasher(c.SSH())

	dir := t.TempDir()
	data := make([]byte, 3<<20)
	_, err = rand.Read(data)
	require.NoError(t, err)
	want := sha256.Sum256(data)
	for _, name := range []string{"plain.bin", "it's a file.bin", "two\nlines.bin", `back\slash $(rm -rf x).bin`} {
		f := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(f, data, 0o644))
		got, err := hash(ctx, f)
		require.NoError(t, err, name)
		assert.Equal(t, hex.EncodeToString(want[:]), got, name)
	}
	_, err = hash(ctx, filepath.Join(dir, "missing"))
	assert.Error(t, err)

	chrooted := startGuest(t, "127.0.0.12")
	cc := get(t, p, chrooted.target())
	defer cc.Release()
	require.NoError(t, os.WriteFile(filepath.Join(chrooted.vm.Root, "f.bin"), data, 0o644))
	_, err = files.SSHGuestHasher(cc.SSH())(ctx, "/f.bin")
	assert.Error(t, err, "internal-sftp gives no sum")
	// The commit still checks: a chunked upload there hashes by reading back.
	fs := files.New(cc.SFTP()).WithGuestHasher(files.SSHGuestHasher(cc.SSH()))
	_, err = fs.WriteChunk(ctx, "/up.bin", "uid", 0, int64(len(data)), false, bytes.NewReader(data), nil)
	require.NoError(t, err)
	sum, err := fs.CommitChunks(ctx, "/up.bin", "uid", files.CommitOptions{Size: int64(len(data)), SHA256: hex.EncodeToString(want[:])})
	require.NoError(t, err)
	assert.Equal(t, hex.EncodeToString(want[:]), sum)
}
