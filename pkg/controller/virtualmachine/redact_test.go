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

package virtualmachine

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	cdiv1 "kubevirt.io/containerized-data-importer-api/pkg/apis/core/v1beta1"

	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
)

// TestStatusHidesURLCredentials: CDI's messages and a refused DataVolume's
// error may quote the import URL; the Wukong's status shows it redacted.
func TestStatusHidesURLCredentials(t *testing.T) {
	const url = "https://importer:s3cr3t@images.example/disk.img?X-Amz-Signature=sigvalue"
	w := &v1alpha1.Wukong{ObjectMeta: metav1.ObjectMeta{Name: "vm1", Namespace: "ns"},
		Spec: v1alpha1.WukongSpec{Disks: []v1alpha1.DiskConfig{{Name: "data"}}}}
	dv := &cdiv1.DataVolume{Status: cdiv1.DataVolumeStatus{Phase: cdiv1.ImportInProgress, Conditions: []cdiv1.DataVolumeCondition{{
		Type: cdiv1.DataVolumeRunning, Status: corev1.ConditionFalse, Reason: "Error",
		Message: `Unable to connect to http data source: Get "` + url + `": EOF`,
	}}}}
	st := Status(w, Observed{
		DataVolumes: map[string]*cdiv1.DataVolume{"vm1-data": dv},
		Err:         errors.New(`admission webhook denied: spec.source.http.url: "` + url + `"`),
	})
	out, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"s3cr3t", "sigvalue", "importer:"} {
		if strings.Contains(string(out), s) {
			t.Errorf("the status shows %q: %s", s, out)
		}
	}
	if !strings.Contains(string(out), "https://images.example/disk.img?X-Amz-Signature=REDACTED") {
		t.Errorf("the status does not name the URL redacted: %s", out)
	}
}
