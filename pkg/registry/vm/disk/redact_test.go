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

package disk

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/novasphere/wukong/pkg/apis/vm"
)

// TestDisksHideURLCredentials: the derived Disk and its table show an
// import URL and the status messages that quote it without the login or the
// pre-signed query, and leave the Wukong's own status as it was.
func TestDisksHideURLCredentials(t *testing.T) {
	const url = "https://importer:s3cr3t@images.example/disk.img?X-Amz-Credential=AKIAEXAMPLE&X-Amz-Signature=sigvalue"
	w := wukong("vm1", "1", nil, "data")
	w.Spec.Disks[0].ImportSource = &vm.ImportSourceSpec{Type: vm.ImportSourceHTTP, URL: url}
	msg := `Unable to connect to http data source: Get "` + url + `": EOF`
	w.Status.Volumes = []vm.VolumeStatus{{
		Name:         "data",
		ImportStatus: &vm.ImportStatus{Phase: "Failed", Message: msg},
		ExportStatus: &vm.ExportStatus{Phase: "Failed", Message: msg},
		PushStatus:   &vm.PushStatus{Phase: "Failed", Target: "http raw " + url, Message: msg},
	}}
	disks := disksOf(w)
	tbl, err := tableConvertor.ConvertToTable(context.Background(), disks[0], &metav1.TableOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal([]any{disks, tbl})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"s3cr3t", "AKIAEXAMPLE", "sigvalue", "importer"} {
		if strings.Contains(string(out), s) {
			t.Errorf("the disk or its table shows %q: %s", s, out)
		}
	}
	if got, want := disks[0].Spec.Source, "https://images.example/disk.img?X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED"; got != want {
		t.Errorf("source %q, want %q", got, want)
	}
	if w.Status.Volumes[0].ImportStatus.Message != msg {
		t.Errorf("the Wukong's own status changed: %q", w.Status.Volumes[0].ImportStatus.Message)
	}
}
