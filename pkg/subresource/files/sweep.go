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
	"os"
	"path"
	"sync"
	"time"

	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/klog/v2"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/registry/vm/wukongfiletransfer"
	"github.com/novasphere/wukong/pkg/transfer/files"
	"github.com/novasphere/wukong/pkg/transfer/remotepath"
)

// Sweeper removes, when a guest is reached, the temporary files of plain and
// tar uploads that a server which died (crash, restart, a replica gone) left
// in it: SSHDialer.Leftover only covers failures its own replica saw.
//
// Where: the directories of the Wukong's Failed upload records, the target's
// directory and, for a tar, the tree under the destination (the records say
// where uploads went; the guest's whole filesystem is not walked). What: only
// files named exactly as Upload or Extract name them (files.IsUploadTemp),
// last modified longer than MaxAge ago. A directory of an upload still
// running (Pending or Transferring, on any replica) is left alone whatever
// its files' ages, so a guest clock running behind cannot cost a live upload
// its file.
//
// Chunked uploads' files (named after their record's UID) are never matched
// by that pattern: the collector removes the file of a record it ends, and
// a replica that could not reach the guest then remembers it in memory only
// (SSHDialer.Leftover), until its own next connection to that guest. With
// replicas, that connection may never come to the same replica, and a
// replica that dies forgets. So a sweep also removes, by exact name, the
// files of the Wukong's chunked uploads that ended Failed more than
// chunkGrace ago: any replica can, as the records are in etcd.
type Sweeper struct {
	// Records is the wukongfiletransfers storage.
	Records rest.Lister
	// MaxAge: younger temporary files are kept.
	MaxAge time.Duration
	// Every: a replica sweeps a Wukong's guest at most this often.
	Every time.Duration
	// MaxEntries caps the directory entries one sweep looks at.
	MaxEntries int

	now  func() time.Time
	mu   sync.Mutex
	last map[types.UID]time.Time
}

// sweepFS is what a sweep needs of a guest.
type sweepFS interface {
	Sweep(ctx context.Context, roots []files.SweepRoot, opts files.SweepOptions) ([]string, error)
	Stat(p string) (os.FileInfo, error)
	Remove(p string) error
}

// chunkGrace is how long after its record ended Failed a chunked upload's
// file is left alone: a chunk still in flight then (a request lasts at most
// kube-apiserver's request timeout, a stalled one the idle timeout) may
// write to it once more.
const chunkGrace = 5 * time.Minute

// maxChunkTemps caps the chunked uploads' files one sweep looks for.
const maxChunkTemps = 100

// Run sweeps w's guest through fs if this replica has not done so in the last
// Every. It never fails the connection: what goes wrong is logged.
func (s *Sweeper) Run(ctx context.Context, w *vm.Wukong, fs sweepFS) {
	if !s.due(w) {
		return
	}
	roots, chunkTemps, err := s.roots(ctx, w)
	if err != nil {
		klog.ErrorS(err, "Listing upload records to sweep temporary files", "wukong", klog.KObj(w))
		return
	}
	for _, p := range chunkTemps {
		if _, err := fs.Stat(p); err != nil {
			continue // gone already, the usual case
		}
		if err := fs.Remove(p); err != nil {
			klog.ErrorS(err, "Removing the temporary file of a failed chunked upload", "wukong", klog.KObj(w), "path", p)
			continue
		}
		klog.InfoS("Removed the temporary file of a failed chunked upload", "wukong", klog.KObj(w), "path", p)
	}
	if len(roots) == 0 {
		return
	}
	removed, err := fs.Sweep(ctx, roots, files.SweepOptions{OlderThan: s.clock().Add(-s.MaxAge), MaxEntries: s.MaxEntries})
	for _, p := range removed {
		klog.InfoS("Removed the temporary file of an upload that did not finish", "wukong", klog.KObj(w), "path", p)
	}
	if err != nil {
		klog.ErrorS(err, "Sweeping temporary upload files", "wukong", klog.KObj(w))
	}
}

func (s *Sweeper) clock() time.Time {
	if s.now != nil {
		return s.now()
	}
	return time.Now()
}

// due reports whether w is to be swept now, and if so notes it.
func (s *Sweeper) due(w *vm.Wukong) bool {
	now := s.clock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last == nil {
		s.last = map[types.UID]time.Time{}
	}
	if t, ok := s.last[w.UID]; ok && now.Sub(t) < s.Every {
		return false
	}
	for uid, t := range s.last { // forget Wukongs not seen for long
		if now.Sub(t) >= s.Every {
			delete(s.last, uid)
		}
	}
	s.last[w.UID] = now
	return true
}

// roots are the directories of w's failed uploads, less those of uploads
// still running; chunkTemps the files of w's chunked uploads that failed
// more than chunkGrace ago.
func (s *Sweeper) roots(ctx context.Context, w *vm.Wukong) ([]files.SweepRoot, []string, error) {
	ctx = genericapirequest.WithNamespace(ctx, w.Namespace)
	obj, err := s.Records.List(ctx, &metainternalversion.ListOptions{
		LabelSelector: labels.SelectorFromSet(labels.Set{wukongfiletransfer.WukongLabel: w.Name}),
	})
	if err != nil {
		return nil, nil, err
	}
	list, _ := obj.(*vm.WukongFileTransferList)
	if list == nil {
		return nil, nil, nil
	}
	var failed, busy, chunkTemps []string
	for i := range list.Items {
		rec := &list.Items[i]
		p := rec.Spec.RemotePath
		if rec.Spec.WukongName != w.Name || rec.Spec.Operation != vm.OperationUpload || rec.Spec.Disk != "" || !path.IsAbs(p) {
			continue
		}
		switch rec.Status.Phase {
		case vm.FileTransferPhaseFailed:
			failed = append(failed, path.Clean(p))
			if end := rec.Status.CompletedAt; rec.Spec.ExpectedSize != nil && rec.UID != "" && end != nil &&
				s.clock().Sub(end.Time) >= chunkGrace && len(chunkTemps) < maxChunkTemps {
				chunkTemps = append(chunkTemps, files.ChunkTempName(path.Clean(p), string(rec.UID)))
			}
		case vm.FileTransferPhaseSucceeded:
		default:
			busy = append(busy, path.Clean(p))
		}
	}
	var roots []files.SweepRoot
	seen := map[files.SweepRoot]bool{}
	add := func(r files.SweepRoot) {
		for _, b := range busy {
			if related(r.Dir, b) {
				return
			}
		}
		if !seen[r] {
			seen[r] = true
			roots = append(roots, r)
		}
	}
	for _, p := range failed {
		// A plain upload's temporary file is beside its target; a tar's
		// beside every entry, under the destination (which is p itself).
		add(files.SweepRoot{Dir: path.Dir(p)})
		add(files.SweepRoot{Dir: p, Recursive: true})
	}
	return roots, chunkTemps, nil
}

// related: the directory d may hold temporary files of an upload to p.
func related(d, p string) bool {
	return d == path.Dir(p) || remotepath.Within(d, p) || remotepath.Within(p, d)
}
