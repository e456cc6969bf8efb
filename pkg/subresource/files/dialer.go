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
	"os"
	"sync"

	"github.com/pkg/sftp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/klog/v2"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/events"
	"github.com/novasphere/wukong/pkg/transfer/archive"
	"github.com/novasphere/wukong/pkg/transfer/files"
	"github.com/novasphere/wukong/pkg/transfer/guest"
	"github.com/novasphere/wukong/pkg/transfer/ssh"
)

// SSHDialer reaches guests for method ssh: pkg/transfer/guest finds the
// address and credentials, pkg/transfer/ssh's pool connects, and a host key
// seen for the first time is pinned before the session is used. It only
// reaches guests; the handlers move the bytes.
type SSHDialer struct {
	locator *guest.Locator
	pool    *ssh.Pool
	pinner  HostKeyPinner

	// leftovers are temporary upload files that could not be removed when
	// their upload failed (the connection broke), by Wukong; they are
	// removed on this replica's next connection to the same VM. Safe to
	// lose: with replicas that connection may go to another replica, and
	// a replica that dies forgets; the Sweeper of any replica removes
	// them later from the records. So each Wukong's list is capped
	// (maxLeftovers) rather than kept for a guest this replica may never
	// reach again.
	mu        sync.Mutex
	leftovers map[string][]string

	// Sweeper, when set, removes what uploads of servers that died left
	// in a guest (sweep.go).
	Sweeper *Sweeper

	// Events gets a HostKeyMismatch event on the Wukong for each refused
	// host key: a rebuilt VM or an impostor is the operator's business
	// too, not only the user's whose copy failed.
	Events events.Events
}

var _ Dialer = &SSHDialer{}

// NewSSHDialer returns a dialer that locates guests with locator and
// connects through pool.
func NewSSHDialer(locator *guest.Locator, pool *ssh.Pool, pinner HostKeyPinner) *SSHDialer {
	return &SSHDialer{locator: locator, pool: pool, pinner: pinner, leftovers: map[string][]string{}}
}

// Dial resolves the guest, takes a pooled SFTP session, pins a host key seen
// for the first time and removes leftovers of earlier broken uploads.
func (d *SSHDialer) Dial(ctx context.Context, w *vm.Wukong) (Session, error) {
	target, err := d.locator.SSHTarget(ctx, w)
	if err != nil {
		return nil, err
	}
	client, err := d.pool.Get(ctx, target)
	if err != nil {
		hostKeyEvent(d.Events, w, err)
		return nil, err
	}
	if key := client.LearnedHostKey(); key != nil {
		if err := d.pinner.PinHostKey(ctx, w, key); err != nil {
			client.Discard()
			return nil, err
		}
	}
	ssh := client.SSH()
	fs := files.New(client.SFTP()).WithDirSessions(func() (*files.DirSession, error) { return files.OpenDirSession(ssh) }).
		WithGuestHasher(files.SSHGuestHasher(ssh))
	s := &sshSession{FS: fs, d: d, w: w, client: client}
	d.removeLeftovers(w, s)
	if d.Sweeper != nil {
		d.Sweeper.Run(ctx, w, s.FS)
	}
	return s, nil
}

// hostKeyEvent records a HostKeyMismatch event on w when err is a refused
// host key. It names the fingerprints and the address, never a key.
func hostKeyEvent(ev events.Events, w *vm.Wukong, err error) {
	var mismatch *ssh.HostKeyMismatchError
	if !errors.As(err, &mismatch) {
		return
	}
	want, expected := mismatch.Want, "the known_hosts of the SSH Secret"
	if mismatch.Pinned {
		expected = "the host key pinned in the Wukong's status"
	}
	if want == "" {
		want = "no entry for the guest"
	}
	ev.Wukong(w.Namespace, w.Name, w.UID, corev1.EventTypeWarning, events.ReasonHostKeyMismatch, events.ActionConnect,
		"refused the SSH host key of %s: it presented %s, %s has %s", mismatch.Address, mismatch.Got, expected, want)
}

// maxLeftovers caps the leftovers remembered per Wukong; the oldest go
// first, to the Sweeper.
const maxLeftovers = 64

// Leftover remembers a temporary file to remove on the next connection.
func (d *SSHDialer) Leftover(w *vm.Wukong, p string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	k := w.Namespace + "/" + w.Name
	l := append(d.leftovers[k], p)
	if len(l) > maxLeftovers {
		l = append([]string(nil), l[len(l)-maxLeftovers:]...)
	}
	d.leftovers[k] = l
}

func (d *SSHDialer) removeLeftovers(w *vm.Wukong, fs *sshSession) {
	k := w.Namespace + "/" + w.Name
	d.mu.Lock()
	paths := d.leftovers[k]
	delete(d.leftovers, k)
	d.mu.Unlock()
	for _, p := range paths {
		if err := fs.Remove(p); err != nil {
			klog.ErrorS(err, "Removing the temporary file of a broken upload", "wukong", klog.KObj(w), "path", p)
			d.Leftover(w, p)
		}
	}
}

// sshSession is a pooled SFTP session.
type sshSession struct {
	*files.FS
	d      *SSHDialer
	w      *vm.Wukong
	client *ssh.Client
}

func (s *sshSession) Close(err error) {
	var left *files.LeftoverError
	if errors.As(err, &left) {
		s.d.Leftover(s.w, left.Path)
	}
	if err != nil && brokenSession(err) {
		s.client.Discard()
		return
	}
	// A healthy session goes back to the pool.
	s.client.Release()
}

// brokenSession reports whether err may have left the SSH or SFTP session
// unusable, so that it must not go back to the pool: only the answers of a
// working SFTP server and refusals made before any I/O keep it.
func brokenSession(err error) bool {
	var (
		st apierrors.APIStatus
		se *sftp.StatusError
	)
	switch {
	case errors.As(err, &se), errors.As(err, &st),
		errors.Is(err, os.ErrNotExist), errors.Is(err, os.ErrPermission),
		errors.Is(err, files.ErrExists), errors.Is(err, archive.ErrExists), errors.Is(err, files.ErrChecksumMismatch),
		errors.Is(err, files.ErrTooLarge), errors.Is(err, files.ErrNoParent), errors.Is(err, files.ErrRemoveRoot),
		errors.Is(err, files.ErrIsDirectory), errors.Is(err, files.ErrNotDirectory),
		// A directory over its cap only cut its own SFTP session.
		errors.Is(err, files.ErrTooManyEntries), errors.Is(err, files.ErrDirSession),
		archive.IsRefused(err):
		return false
	}
	return true
}
