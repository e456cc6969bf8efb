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
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sync/atomic"

	"github.com/pkg/sftp"
	gossh "golang.org/x/crypto/ssh"
)

// SFTP version 3 has no way to read part of a directory and stop: pkg/sftp's
// ReadDir collects every entry the server sends until it says the end, so a
// directory of millions of entries, or a guest's SFTP server that never says
// the end, would be held whole in the server's memory before anything could
// count it. A DirSession reads directories over an SFTP session of its own
// whose incoming bytes are budgeted: once a directory's replies exceed what
// its allowed number of entries can take, the session is cut, and the read
// fails with ErrTooManyEntries having held no more than the budget.

// dirEntryBytes is what one entry may take in a READDIR reply: its name (at
// most 255 bytes on Linux), the `ls -l` line OpenSSH sends beside it, and its
// attributes, with room to spare.
const dirEntryBytes = 1024

// dirReplySlack covers a reply's framing and the session's own start.
const dirReplySlack = 64 << 10

// ErrDirSession: the guest would not open the SFTP session that reads
// directories (sshd's MaxSessions, or the subsystem refused); the
// connection itself is fine.
var ErrDirSession = errors.New("the guest refused an SFTP session to read a directory")

// DirSession reads directories with a byte budget. It serves one request at
// a time; Close it when done.
type DirSession struct {
	c     *sftp.Client
	in    *budgetReader
	close func() error
}

// OpenDirSession starts an SFTP session of its own on conn.
func OpenDirSession(conn *gossh.Client) (*DirSession, error) {
	s, err := conn.NewSession()
	if err != nil {
		return nil, fmt.Errorf("%w (is sshd's MaxSessions at least 2?): %w", ErrDirSession, err)
	}
	w, err := s.StdinPipe()
	if err != nil {
		s.Close()
		return nil, err
	}
	r, err := s.StdoutPipe()
	if err != nil {
		s.Close()
		return nil, err
	}
	if err := s.RequestSubsystem("sftp"); err != nil {
		s.Close()
		return nil, fmt.Errorf("%w: %w", ErrDirSession, err)
	}
	d, err := newDirSession(r, w)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("%w: %w", ErrDirSession, err)
	}
	inner := d.close
	d.close = func() error { return errors.Join(inner(), s.Close()) }
	return d, nil
}

// newDirSession runs the SFTP client over r and w.
func newDirSession(r io.Reader, w io.WriteCloser) (*DirSession, error) {
	in := &budgetReader{r: r}
	in.left.Store(dirReplySlack)
	c, err := sftp.NewClientPipe(in, w)
	if err != nil {
		return nil, err
	}
	return &DirSession{c: c, in: in, close: c.Close}, nil
}

// Close ends the session.
func (d *DirSession) Close() error { return d.close() }

// ReadDir reads the directory p, which may have at most max entries (0: no
// limit): more is ErrTooManyEntries, found by count, or by bytes before
// they are all held. After that the session is unusable.
func (d *DirSession) ReadDir(ctx context.Context, p string, max int) ([]os.FileInfo, error) {
	budget := int64(math.MaxInt64)
	if max > 0 {
		budget = int64(max+1)*dirEntryBytes + dirReplySlack
	}
	d.in.left.Store(budget)
	infos, err := d.c.ReadDirContext(ctx, p)
	switch {
	case d.in.over.Load():
		return nil, fmt.Errorf("%s: %w: more than %d", p, ErrTooManyEntries, max)
	case err != nil:
		return nil, err
	case max > 0 && len(infos) > max:
		return nil, fmt.Errorf("%s: %w: it has %d", p, ErrTooManyEntries, len(infos))
	}
	return infos, nil
}

var errOverBudget = errors.New("directory listing over its byte budget")

// budgetReader fails once more than left bytes were asked of it.
type budgetReader struct {
	r    io.Reader
	left atomic.Int64
	over atomic.Bool
}

func (b *budgetReader) Read(p []byte) (int, error) {
	left := b.left.Load()
	if left <= 0 {
		b.over.Store(true)
		return 0, errOverBudget
	}
	if int64(len(p)) > left {
		p = p[:left]
	}
	n, err := b.r.Read(p)
	b.left.Add(-int64(n))
	return n, err
}
