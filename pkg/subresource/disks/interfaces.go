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

package disks

import (
	"context"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	exportv1beta1 "kubevirt.io/api/export/v1beta1"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/registry/vm/wukongfiletransfer"
	"github.com/novasphere/wukong/pkg/transfer/cdi"
	"github.com/novasphere/wukong/pkg/transfer/export"
)

// What the disks subresources need, declared here so that their handlers
// can be tested with fakes; the server wires the real ones.

// Finder finds the disk a name <wukong>-<disk> stands for and its Wukong
// (the disks storage).
type Finder interface {
	Find(ctx context.Context, name string) (*vm.Disk, *vm.Wukong, error)
}

// Exporter says where a disk is served, choosing its PVC or a snapshot of
// its running VM and making the export (*export.Disks): a
// *export.NotReadyError while KubeVirt prepares it, a *export.RefusedError
// when it cannot be read so.
type Exporter interface {
	Open(ctx context.Context, disk export.Disk, format exportv1beta1.ExportVolumeFormat, c export.Choice) (*export.Source, error)
}

// Uploader finds where a DataVolume takes an upload (pkg/transfer/cdi).
type Uploader interface {
	Target(ctx context.Context, namespace, claim string) (*cdi.Target, error)
}

// Owners says whether the DataVolume and PVC named claim are w's own
// (*owner.Checker): an *owner.NotOwnedError when they are not.
type Owners interface {
	Claim(ctx context.Context, w metav1.Object, claim string) error
}

// Recorder keeps the transfer records.
type Recorder interface {
	Start(ctx context.Context, w *vm.Wukong, spec vm.WukongFileTransferSpec, total int64) (wukongfiletransfer.Transfer, error)
	Get(ctx context.Context, namespace, name string) (*vm.WukongFileTransfer, error)
	AddChunk(ctx context.Context, namespace, name string, rng vm.ByteRange, total int64, digest string, counter *wukongfiletransfer.ChunkCounter) (*vm.WukongFileTransfer, error)
	End(ctx context.Context, namespace, name, phase, message, sha256 string) (*vm.WukongFileTransfer, error)
	// BindDiskSource records what a disk transfer reads and returns what
	// the record holds (the first source recorded).
	BindDiskSource(ctx context.Context, namespace, name string, src *vm.DiskSource) (*vm.DiskSource, error)
}

// ExportStatus writes a disk's export phase and progress into its Wukong's
// status (done of total bytes; total < 0 when unknown).
type ExportStatus interface {
	SetExport(ctx context.Context, w *vm.Wukong, disk, phase string, done, total int64, message string)
}
