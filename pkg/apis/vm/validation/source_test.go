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

package validation

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
)

func sourced(src *vm.FileTransferSource, mutate ...func(*vm.WukongFileTransferSpec)) *vm.WukongFileTransfer {
	t := &vm.WukongFileTransfer{
		ObjectMeta: metav1.ObjectMeta{Name: "t", Namespace: "ns"},
		Spec:       vm.WukongFileTransferSpec{WukongName: "vm1", Operation: vm.OperationUpload, RemotePath: "/etc/app.conf", Source: src},
	}
	for _, m := range mutate {
		m(&t.Spec)
	}
	return t
}

func TestValidateTransferSource(t *testing.T) {
	key := &vm.KeyReference{Name: "cfg", Key: "app.conf"}
	for name, tc := range map[string]struct {
		t    *vm.WukongFileTransfer
		want string // "" when valid
	}{
		"configmap":     {sourced(&vm.FileTransferSource{ConfigMapKeyRef: key, Mode: "0640"}), ""},
		"secret":        {sourced(&vm.FileTransferSource{SecretKeyRef: key}), ""},
		"url":           {sourced(&vm.FileTransferSource{URL: &vm.URLSource{URL: "https://example.com/a?x=1", CASecretRef: &vm.LocalObjectReference{Name: "ca"}}}), ""},
		"vm to vm":      {sourced(&vm.FileTransferSource{Wukong: &vm.WukongFileSource{Name: "vm2", Path: "/etc/app.conf"}}), ""},
		"none":          {sourced(&vm.FileTransferSource{}), "set exactly one of url, configMapKeyRef, secretKeyRef and wukong"},
		"two":           {sourced(&vm.FileTransferSource{ConfigMapKeyRef: key, SecretKeyRef: key}), "set exactly one"},
		"url and key":   {sourced(&vm.FileTransferSource{URL: &vm.URLSource{URL: "https://example.com/a"}, SecretKeyRef: key}), "set exactly one"},
		"download":      {sourced(&vm.FileTransferSource{SecretKeyRef: key}, func(s *vm.WukongFileTransferSpec) { s.Operation = vm.OperationDownload }), "only an upload has a source"},
		"and localPath": {sourced(&vm.FileTransferSource{SecretKeyRef: key}, func(s *vm.WukongFileTransferSpec) { s.LocalPath = "/tmp/x" }), "spec.localPath"},
		"ftp":           {sourced(&vm.FileTransferSource{URL: &vm.URLSource{URL: "ftp://example.com/a"}}), "http:// or https://"},
		"userinfo":      {sourced(&vm.FileTransferSource{URL: &vm.URLSource{URL: "https://bob:hunter2@example.com/a"}}), "must not carry credentials"},
		"bad sha":       {sourced(&vm.FileTransferSource{URL: &vm.URLSource{URL: "https://example.com/a", SHA256: "abc"}}), "spec.source.url.sha256"},
		"two shas": {sourced(&vm.FileTransferSource{URL: &vm.URLSource{URL: "https://example.com/a", SHA256: strings.Repeat("a", 64)}},
			func(s *vm.WukongFileTransferSpec) { s.ExpectedSHA256 = strings.Repeat("b", 64) }), "differs from spec.expectedSHA256"},
		"relative path": {sourced(&vm.FileTransferSource{Wukong: &vm.WukongFileSource{Name: "vm2", Path: "etc"}}), "spec.source.wukong.path"},
		"itself":        {sourced(&vm.FileTransferSource{Wukong: &vm.WukongFileSource{Name: "vm1", Path: "/etc/app.conf"}}), "is the target itself"},
		"bad mode":      {sourced(&vm.FileTransferSource{SecretKeyRef: key, Mode: "rw"}), "spec.source.mode"},
		"no key":        {sourced(&vm.FileTransferSource{SecretKeyRef: &vm.KeyReference{Name: "s"}}), "spec.source.secretKeyRef.key"},
	} {
		t.Run(name, func(t *testing.T) {
			errs := ValidateWukongFileTransfer(tc.t)
			if tc.want == "" {
				assert.Empty(t, errs)
				return
			}
			assert.Contains(t, errs.ToAggregate().Error(), tc.want)
			assert.NotContains(t, errs.ToAggregate().Error(), "hunter2")
		})
	}
}

// TestFillDeclaredUpload: a declared localPath upload nothing ran may be
// given its size and sha256 once; nothing else changes, and not later.
func TestFillDeclaredUpload(t *testing.T) {
	old := &vm.WukongFileTransfer{
		ObjectMeta: metav1.ObjectMeta{Name: "t", Namespace: "ns", ResourceVersion: "1", Labels: map[string]string{v1alpha1.LabelDeclared: "true"}},
		Spec:       vm.WukongFileTransferSpec{WukongName: "vm1", Operation: vm.OperationUpload, LocalPath: "/tmp/c", RemotePath: "/etc/c"},
		Status:     vm.WukongFileTransferStatus{Phase: vm.FileTransferPhasePending},
	}
	sum := strings.Repeat("c", 64)
	filled := old.DeepCopy()
	filled.Spec.ExpectedSize, filled.Spec.ExpectedSHA256 = ptr.To(int64(5)), sum
	assert.Empty(t, ValidateWukongFileTransferUpdate(filled, old))

	other := filled.DeepCopy()
	other.Spec.RemotePath = "/etc/other"
	assert.NotEmpty(t, ValidateWukongFileTransferUpdate(other, old), "the path changed with the fill")
	started := old.DeepCopy()
	started.Status.Phase = vm.FileTransferPhaseTransferring
	assert.NotEmpty(t, ValidateWukongFileTransferUpdate(filled, started), "filled after it started")
	stream := old.DeepCopy()
	delete(stream.Labels, v1alpha1.LabelDeclared)
	assert.NotEmpty(t, ValidateWukongFileTransferUpdate(filled, stream), "a server record filled")
	again := filled.DeepCopy()
	refilled := filled.DeepCopy()
	refilled.Spec.ExpectedSize = ptr.To(int64(6))
	assert.NotEmpty(t, ValidateWukongFileTransferUpdate(refilled, again), "filled twice")
	authorSum := old.DeepCopy()
	authorSum.Spec.ExpectedSHA256 = strings.Repeat("d", 64)
	assert.NotEmpty(t, ValidateWukongFileTransferUpdate(filled, authorSum), "the author's sha256 replaced")
}
