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

package exporttarget

import (
	"context"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	exportv1beta1 "kubevirt.io/api/export/v1beta1"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/egress"
	"github.com/novasphere/wukong/pkg/events"
	"github.com/novasphere/wukong/pkg/registry/vm/wukongfiletransfer"
	"github.com/novasphere/wukong/pkg/transfer/export"
)

// What the controller uses of the server, declared here so that its tests
// can fake each part.

// Recorder records each push as a WukongFileTransfer
// (*wukongfiletransfer.Recorder). The record names the user in ctx as the
// one who asked for the transfer.
type Recorder interface {
	Start(ctx context.Context, w *vm.Wukong, spec vm.WukongFileTransferSpec, total int64) (wukongfiletransfer.Transfer, error)
	// BindDiskSource states in the record what the push read.
	BindDiskSource(ctx context.Context, namespace, name string, src *vm.DiskSource) (*vm.DiskSource, error)
}

// Exporter says where a disk's volume is served, from its PVC or a
// snapshot of its running VM (*export.Disks). A *export.NotReadyError means
// KubeVirt is preparing it; a *export.RefusedError that it cannot be read
// so (waiting does not help).
type Exporter interface {
	Open(ctx context.Context, disk export.Disk, format exportv1beta1.ExportVolumeFormat, c export.Choice) (*export.Source, error)
}

// Owners says whether the DataVolume and PVC named claim are w's own
// (*owner.Checker): an *owner.NotOwnedError when they are not.
type Owners interface {
	Claim(ctx context.Context, w metav1.Object, claim string) error
}

// Core reads the Secrets and ConfigMaps that targets name
// (kubernetes.Interface's CoreV1()).
type Core interface {
	corev1client.SecretsGetter
	corev1client.ConfigMapsGetter
}

// Deps are what pushes need from the server.
type Deps struct {
	Exporter Exporter
	Recorder Recorder
	Core     Core
	// Owners, which New requires, checks that the disk pushed is the
	// Wukong's own.
	Owners Owners
	// Egress says which addresses pushes may connect to; nil denies the
	// built-in ranges (egress.BuiltinDenied).
	Egress *egress.Policy
	// Events gets the pushes' phase changes, on the Wukong.
	Events events.Events
}
