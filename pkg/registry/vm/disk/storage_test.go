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
	"fmt"
	"reflect"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/novasphere/wukong/pkg/apis/vm"
)

func wukong(name, rv string, lbl map[string]string, disks ...string) *vm.Wukong {
	w := &vm.Wukong{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", ResourceVersion: rv, Labels: lbl}}
	for _, d := range disks {
		w.Spec.Disks = append(w.Spec.Disks, vm.DiskConfig{Name: d})
	}
	return w
}

// describe renders events as "TYPE name" lines, the part the tests assert.
func describe(evs []watch.Event) []string {
	out := []string{}
	for _, ev := range evs {
		switch o := ev.Object.(type) {
		case *vm.Disk:
			out = append(out, fmt.Sprintf("%s %s@%s", ev.Type, o.Name, o.ResourceVersion))
		case *metav1.Status:
			out = append(out, fmt.Sprintf("%s status %s", ev.Type, o.Message))
		default:
			out = append(out, fmt.Sprintf("%s %T", ev.Type, o))
		}
	}
	return out
}

func TestDiskEvents(t *testing.T) {
	team := labels.SelectorFromSet(labels.Set{"team": "a"})
	type step struct {
		ev   watch.Event
		want []string
	}
	tests := []struct {
		name  string
		sel   labels.Selector
		steps []step
	}{{
		name: "a Wukong's disks are added, changed, then deleted with it",
		sel:  labels.Everything(),
		steps: []step{
			{watch.Event{Type: watch.Added, Object: wukong("vm1", "1", nil, "system", "data")}, []string{"ADDED vm1-system@1", "ADDED vm1-data@1"}},
			{watch.Event{Type: watch.Modified, Object: wukong("vm1", "2", nil, "system", "data")}, []string{"MODIFIED vm1-system@2", "MODIFIED vm1-data@2"}},
			{watch.Event{Type: watch.Deleted, Object: wukong("vm1", "3", nil, "system", "data")}, []string{"DELETED vm1-data@3", "DELETED vm1-system@3"}},
			// Seen again after its deletion: new disks, not modified ones.
			{watch.Event{Type: watch.Added, Object: wukong("vm1", "4", nil, "system")}, []string{"ADDED vm1-system@4"}},
		},
	}, {
		name: "a disk removed from the spec is deleted, one added is added",
		sel:  labels.Everything(),
		steps: []step{
			{watch.Event{Type: watch.Added, Object: wukong("vm1", "1", nil, "system", "data")}, []string{"ADDED vm1-system@1", "ADDED vm1-data@1"}},
			{watch.Event{Type: watch.Modified, Object: wukong("vm1", "2", nil, "system", "scratch")}, []string{"MODIFIED vm1-system@2", "ADDED vm1-scratch@2", "DELETED vm1-data@2"}},
		},
	}, {
		name: "disks follow their Wukong's labels in and out of the selector",
		sel:  team,
		steps: []step{
			{watch.Event{Type: watch.Added, Object: wukong("vm1", "1", map[string]string{"team": "b"}, "system")}, []string{}},
			{watch.Event{Type: watch.Modified, Object: wukong("vm1", "2", map[string]string{"team": "a"}, "system")}, []string{"ADDED vm1-system@2"}},
			{watch.Event{Type: watch.Modified, Object: wukong("vm1", "3", map[string]string{"team": "b"}, "system")}, []string{"DELETED vm1-system@3"}},
		},
	}, {
		name: "two Wukongs are kept apart",
		sel:  labels.Everything(),
		steps: []step{
			{watch.Event{Type: watch.Added, Object: wukong("vm1", "1", nil, "system")}, []string{"ADDED vm1-system@1"}},
			{watch.Event{Type: watch.Added, Object: wukong("vm2", "2", nil, "system")}, []string{"ADDED vm2-system@2"}},
			{watch.Event{Type: watch.Deleted, Object: wukong("vm1", "3", nil, "system")}, []string{"DELETED vm1-system@3"}},
			{watch.Event{Type: watch.Modified, Object: wukong("vm2", "4", nil, "system")}, []string{"MODIFIED vm2-system@4"}},
		},
	}, {
		name: "bookmarks carry the Wukongs' resourceVersion; errors pass through",
		sel:  labels.Everything(),
		steps: []step{
			{watch.Event{Type: watch.Bookmark, Object: wukong("", "7", nil)}, []string{"BOOKMARK @7"}},
			{watch.Event{Type: watch.Error, Object: &metav1.Status{Message: "too old"}}, []string{"ERROR status too old"}},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := &diskEvents{sel: tt.sel, seen: map[string]map[string]bool{}}
			for i, s := range tt.steps {
				if got := describe(tr.translate(s.ev)); !reflect.DeepEqual(got, s.want) {
					t.Fatalf("step %d: got %v, want %v", i, got, s.want)
				}
			}
		})
	}
}
