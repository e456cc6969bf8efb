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
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pipeDirSession is a DirSession to server over in-memory pipes.
func pipeDirSession(t testing.TB, serve func(io.Reader, io.WriteCloser) func()) *DirSession {
	t.Helper()
	clientR, serverW := io.Pipe()
	serverR, clientW := io.Pipe()
	stop := serve(serverR, serverW)
	d, err := newDirSession(clientR, clientW)
	require.NoError(t, err)
	t.Cleanup(func() {
		// The pipes first: a server blocked writing to a client that
		// stopped reading holds its lock until its write fails.
		clientR.Close()
		serverW.Close()
		serverR.Close()
		d.Close()
		stop()
	})
	return d
}

func hostServer(r io.Reader, w io.WriteCloser) func() {
	s, err := sftp.NewServer(struct {
		io.Reader
		io.WriteCloser
	}{r, w})
	if err != nil {
		panic(err)
	}
	go func() { _ = s.Serve() }()
	return func() { s.Close() }
}

// endless is a guest's SFTP server whose directory listings never end.
type endless struct{}

type dirInfo struct{ name string }

func (d dirInfo) Name() string       { return d.name }
func (d dirInfo) Size() int64        { return 0 }
func (d dirInfo) Mode() os.FileMode  { return os.ModeDir | 0o755 }
func (d dirInfo) ModTime() time.Time { return time.Unix(0, 0) }
func (d dirInfo) IsDir() bool        { return true }
func (d dirInfo) Sys() any           { return nil }

type listerFunc func([]os.FileInfo, int64) (int, error)

func (f listerFunc) ListAt(ls []os.FileInfo, off int64) (int, error) { return f(ls, off) }

func (endless) Filelist(r *sftp.Request) (sftp.ListerAt, error) {
	if r.Method != "List" {
		return listerFunc(func(ls []os.FileInfo, _ int64) (int, error) {
			ls[0] = dirInfo{"d"}
			return 1, io.EOF
		}), nil
	}
	return listerFunc(func(ls []os.FileInfo, off int64) (int, error) {
		for i := range ls {
			ls[i] = dirInfo{fmt.Sprintf("entry-%d-%s", off+int64(i), strings.Repeat("x", 100))}
		}
		return len(ls), nil // and never io.EOF
	}), nil
}

func endlessServer(r io.Reader, w io.WriteCloser) func() {
	h := sftp.InMemHandler()
	h.FileList = endless{}
	s := sftp.NewRequestServer(struct {
		io.Reader
		io.WriteCloser
	}{r, w}, h)
	go func() { _ = s.Serve() }()
	return func() { s.Close() }
}

// TestDirSessionCaps: a directory over its cap is refused by count when it
// is small enough to read, and by bytes, before it is all held, when not.
func TestDirSessionCaps(t *testing.T) {
	base := t.TempDir()
	mk := func(dir string, n int, nameLen int) string {
		p := filepath.Join(base, dir)
		require.NoError(t, os.Mkdir(p, 0o755))
		for i := range n {
			name := fmt.Sprintf("%06d", i) + strings.Repeat("n", nameLen)
			require.NoError(t, os.WriteFile(filepath.Join(p, name), nil, 0o644))
		}
		return p
	}
	small, huge := mk("small", 20, 0), mk("huge", 3000, 200)

	d := pipeDirSession(t, hostServer)
	infos, err := d.ReadDir(context.Background(), small, 20)
	require.NoError(t, err)
	assert.Len(t, infos, 20)
	_, err = d.ReadDir(context.Background(), small, 19)
	require.ErrorIs(t, err, ErrTooManyEntries)
	assert.Contains(t, err.Error(), "it has 20")
	infos, err = d.ReadDir(context.Background(), huge, 0)
	require.NoError(t, err, "no cap, no budget")
	assert.Len(t, infos, 3000)

	_, err = d.ReadDir(context.Background(), huge, 10)
	require.ErrorIs(t, err, ErrTooManyEntries)
	assert.Contains(t, err.Error(), "more than 10")
	_, err = d.ReadDir(context.Background(), small, 100)
	assert.Error(t, err, "the session was cut at the budget")

	t.Run("a server that never ends a listing", func(t *testing.T) {
		d := pipeDirSession(t, endlessServer)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, err := d.ReadDir(ctx, "/d", 1000)
		require.ErrorIs(t, err, ErrTooManyEntries)
		require.NoError(t, ctx.Err())
	})
}
