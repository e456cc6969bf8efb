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
	"io"
	"os"
	"time"

	gossh "golang.org/x/crypto/ssh"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/registry/vm/wukongfiletransfer"
	"github.com/novasphere/wukong/pkg/transfer/archive"
	"github.com/novasphere/wukong/pkg/transfer/files"
)

// What the files subresource needs, declared here so that its handlers can
// be tested with fakes; the server wires the real ones (sshDialer,
// wukongfiletransfer.Recorder, wukong.StatusWriter).

// Dialer reaches a Wukong's guest.
type Dialer interface {
	// Dial returns a session on the guest's files.
	Dial(ctx context.Context, w *vm.Wukong) (Session, error)
	// Leftover names a temporary file of w's guest to remove on the next
	// connection, when it cannot be removed now.
	Leftover(w *vm.Wukong, path string)
}

// Session is one connection to a guest's files.
type Session interface {
	GuestFS
	// Close gives the connection back. err is how its request ended: a
	// connection err may have broken is dropped, and a temporary file a
	// *files.LeftoverError names is removed on the next connection.
	Close(err error)
}

// GuestFS is what the handlers do with a guest's files; pkg/transfer/files
// implements it over SFTP.
type GuestFS interface {
	Stat(p string) (os.FileInfo, error)
	Read(ctx context.Context, p string, offset, length, size int64, w io.Writer) (int64, error)
	List(ctx context.Context, p string, max int) ([]files.Entry, error)
	WriteTar(ctx context.Context, root string, w io.Writer, opts archive.WriteOptions) (archive.Stats, error)
	ExtractTar(ctx context.Context, dest string, r io.Reader, createParents bool, opts archive.ExtractOptions) (archive.Stats, error)
	Upload(ctx context.Context, target string, body io.Reader, opts files.UploadOptions) (files.UploadResult, error)
	Delete(p string, recursive bool) error
	Remove(p string) error
	WriteChunk(ctx context.Context, target, id string, offset, max int64, createParents bool, body io.Reader, observer io.Writer) (int64, error)
	CommitChunks(ctx context.Context, target, id string, opts files.CommitOptions) (string, error)
}

// Recorder keeps the transfer records.
type Recorder interface {
	Start(ctx context.Context, w *vm.Wukong, spec vm.WukongFileTransferSpec, total int64) (wukongfiletransfer.Transfer, error)
	Ended(ctx context.Context, w *vm.Wukong, spec vm.WukongFileTransferSpec, started time.Time, body []byte, phase, message string) (*vm.WukongFileTransfer, error)
	Get(ctx context.Context, namespace, name string) (*vm.WukongFileTransfer, error)
	AddChunk(ctx context.Context, namespace, name string, rng vm.ByteRange, total int64, digest string, counter *wukongfiletransfer.ChunkCounter) (*vm.WukongFileTransfer, error)
	AddUploadChunk(ctx context.Context, namespace, name string, rng vm.ByteRange, total int64, hashed *vm.HashedRange, counter *wukongfiletransfer.ChunkCounter) (*vm.WukongFileTransfer, error)
	BreakUploadHash(ctx context.Context, namespace, name string, rng vm.ByteRange) error
	Note(ctx context.Context, namespace, name, message string) error
	End(ctx context.Context, namespace, name, phase, message, sha256 string) (*vm.WukongFileTransfer, error)
	BeginCommit(ctx context.Context, namespace, name, message string) (*vm.WukongFileTransfer, bool, error)
	KeepCommitting(ctx context.Context, namespace, name string, since *metav1.Time, lost func(error))
}

// HostKeyPinner keeps a guest host key trusted on first use in the Wukong's
// status, so that a later, different key is refused.
type HostKeyPinner interface {
	PinHostKey(ctx context.Context, w *vm.Wukong, key gossh.PublicKey) error
}
