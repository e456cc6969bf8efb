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

package plugin_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/cmd/plugin"
)

// fakeWukong plays one Wukong and its controller: a PATCH sets the run
// strategy (and the generation, when it changed); every GET after it shows
// the next of statuses, which the controller wrote for the new generation
// unless stale says otherwise.
type fakeWukong struct {
	mu       sync.Mutex
	w        v1alpha1.Wukong
	statuses []v1alpha1.WukongStatus
	patches  []string // bodies, with their Content-Type
	patched  bool
}

func (fw *fakeWukong) serve(w http.ResponseWriter, r *http.Request, ns, name string) {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if ns != fw.w.Namespace || name != fw.w.Name {
		writeStatus(w, apierrors.NewNotFound(v1alpha1.Resource("wukongs"), name))
		return
	}
	switch r.Method {
	case http.MethodPatch:
		b, _ := io.ReadAll(r.Body)
		fw.patches = append(fw.patches, r.Header.Get("Content-Type")+" "+string(b))
		var p struct {
			Spec struct {
				RunStrategy string `json:"runStrategy"`
			} `json:"spec"`
		}
		if err := json.Unmarshal(b, &p); err != nil {
			writeStatus(w, apierrors.NewBadRequest(err.Error()))
			return
		}
		if p.Spec.RunStrategy != fw.w.Spec.RunStrategy {
			fw.w.Generation++
		}
		fw.w.Spec.RunStrategy = p.Spec.RunStrategy
		fw.patched = true
	case http.MethodGet:
		if fw.patched && len(fw.statuses) > 0 {
			fw.w.Status = fw.statuses[0]
			if fw.w.Status.ObservedGeneration == 0 {
				fw.w.Status.ObservedGeneration = fw.w.Generation
			}
			if len(fw.statuses) > 1 {
				fw.statuses = fw.statuses[1:]
			}
		}
	default:
		writeStatus(w, apierrors.NewMethodNotSupported(v1alpha1.Resource("wukongs"), r.Method))
		return
	}
	out := fw.w.DeepCopy()
	out.TypeMeta = metav1.TypeMeta{APIVersion: v1alpha1.SchemeGroupVersion.String(), Kind: "Wukong"}
	writeJSON(w, http.StatusOK, out)
}

func startFake(t *testing.T, strategy string, st v1alpha1.WukongStatus, then ...v1alpha1.WukongStatus) (*fakeAPI, *fakeWukong) {
	t.Cleanup(plugin.SetPollInterval(10 * time.Millisecond))
	f := newFakeAPI(t)
	st.ObservedGeneration = 1
	fw := &fakeWukong{
		w: v1alpha1.Wukong{
			ObjectMeta: metav1.ObjectMeta{Namespace: fakeNS, Name: "vm1", Generation: 1},
			Spec:       v1alpha1.WukongSpec{CPU: 1, RunStrategy: strategy},
			Status:     st,
		},
		statuses: then,
	}
	f.wukong = fw.serve
	return f, fw
}

func phase(p string) v1alpha1.WukongStatus { return v1alpha1.WukongStatus{Phase: p} }

func TestStop(t *testing.T) {
	f, fw := startFake(t, "Always", v1alpha1.WukongStatus{Phase: "Running", Address: "10.0.0.5"},
		phase("Stopping"), phase("Stopping"), phase("Stopped"))
	out, errOut, err := f.run(nil, "stop", "vm1")
	require.NoError(t, err)
	assert.Equal(t, "wukong/vm1: spec.runStrategy Halted (was Always)\nwukong/vm1: Stopped\n", out)
	assert.Equal(t, "wukong/vm1: Stopping\n", errOut, "each phase on the way, once")
	assert.Equal(t, []string{`application/merge-patch+json {"spec":{"runStrategy":"Halted"}}`}, fw.patches)
	calls := f.calls()
	require.GreaterOrEqual(t, len(calls), 5)
	assert.Equal(t, []string{"GET namespaces/ns1/wukongs/vm1", "PATCH namespaces/ns1/wukongs/vm1"}, calls[:2])
	assert.Equal(t, "Halted", fw.w.Spec.RunStrategy)
}

func TestStart(t *testing.T) {
	f, fw := startFake(t, "Halted", phase("Stopped"),
		phase("Starting"), v1alpha1.WukongStatus{Phase: "Running", Address: "10.0.0.5"})
	out, errOut, err := f.run(nil, "start", "vm1")
	require.NoError(t, err)
	assert.Equal(t, "wukong/vm1: spec.runStrategy Always (was Halted)\nwukong/vm1: Running at 10.0.0.5\n", out)
	assert.Equal(t, "wukong/vm1: Starting\n", errOut)
	assert.Equal(t, []string{`application/merge-patch+json {"spec":{"runStrategy":"Always"}}`}, fw.patches)
}

// TestStartWaitsForTheNewStatus: a status written for the generation
// before the patch (here still Running from before a stop) does not end
// the wait.
func TestStartWaitsForTheNewStatus(t *testing.T) {
	stale := v1alpha1.WukongStatus{Phase: "Running", Address: "10.0.0.5", ObservedGeneration: 1}
	f, _ := startFake(t, "Halted", stale, stale, stale, phase("Starting"), v1alpha1.WukongStatus{Phase: "Running", Address: "10.0.0.6"})
	out, _, err := f.run(nil, "start", "vm1")
	require.NoError(t, err)
	assert.Contains(t, out, "wukong/vm1: Running at 10.0.0.6\n")
}

func TestStartStopNoWait(t *testing.T) {
	f, _ := startFake(t, "Halted", phase("Stopped"), phase("Starting"))
	out, errOut, err := f.run(nil, "start", "vm1", "--wait=false")
	require.NoError(t, err)
	assert.Equal(t, "wukong/vm1: spec.runStrategy Always (was Halted)\n", out)
	assert.Empty(t, errOut)
	assert.Equal(t, []string{"GET namespaces/ns1/wukongs/vm1", "PATCH namespaces/ns1/wukongs/vm1"}, f.calls())

	// Stopping a stopped VM says so and changes nothing.
	f, fw := startFake(t, "Halted", phase("Stopped"), phase("Stopped"))
	out, _, err = f.run(nil, "stop", "vm1", "-q")
	require.NoError(t, err)
	assert.Equal(t, "wukong/vm1: spec.runStrategy is Halted already\nwukong/vm1: Stopped\n", out)
	assert.Equal(t, int64(1), fw.w.Generation)
}

func TestStartStopFailures(t *testing.T) {
	t.Run("timeout", func(t *testing.T) {
		f, _ := startFake(t, "Always", phase("Running"), v1alpha1.WukongStatus{Phase: "Stopping", Conditions: []metav1.Condition{
			{Type: "Ready", Status: metav1.ConditionFalse, Reason: "Stopping", Message: "the VM is stopping (runStrategy Halted)"}}})
		_, _, err := f.run(nil, "stop", "vm1", "--timeout", "200ms")
		require.Error(t, err)
		assert.Equal(t, "wukong/vm1 is not Stopped after 200ms: its phase is Stopping (the VM is stopping (runStrategy Halted)); kubectl get wukong vm1 -w shows when it is", err.Error())
	})
	t.Run("timeout, nothing said", func(t *testing.T) {
		f, _ := startFake(t, "Halted", phase("Stopped"), phase("Starting"))
		_, _, err := f.run(nil, "start", "vm1", "--timeout", "100ms")
		require.Error(t, err)
		assert.Equal(t, "wukong/vm1 is not Running after 100ms: its phase is Starting; kubectl get wukong vm1 -w shows when it is", err.Error())
	})
	t.Run("failed", func(t *testing.T) {
		f, _ := startFake(t, "Halted", phase("Stopped"), v1alpha1.WukongStatus{Phase: "Failed", Conditions: []metav1.Condition{
			{Type: "Imported", Status: metav1.ConditionFalse, Reason: "ImportFailed", Message: "data: HTTP 404"}}})
		_, _, err := f.run(nil, "start", "vm1")
		require.Error(t, err)
		assert.Equal(t, "wukong/vm1 failed: data: HTTP 404", err.Error())
	})
	t.Run("changed meanwhile", func(t *testing.T) {
		f, fw := startFake(t, "Halted", phase("Stopped"), phase("Starting"))
		done := make(chan error, 1)
		go func() { _, _, err := f.run(nil, "start", "vm1"); done <- err }()
		require.Eventually(t, func() bool { fw.mu.Lock(); defer fw.mu.Unlock(); return fw.patched }, 5*time.Second, 5*time.Millisecond)
		fw.mu.Lock()
		fw.w.Spec.RunStrategy = "Halted" // someone stopped it again
		fw.mu.Unlock()
		err := <-done
		require.Error(t, err)
		assert.Contains(t, err.Error(), "spec.runStrategy was changed to Halted meanwhile")
	})
	t.Run("forbidden", func(t *testing.T) {
		f, fw := startFake(t, "Always", phase("Running"))
		f.failing("PATCH", -1, apierrors.NewForbidden(v1alpha1.Resource("wukongs"), "vm1", nil))
		_, _, err := f.run(nil, "stop", "vm1")
		require.Error(t, err)
		assert.Contains(t, err.Error(), "forbidden")
		assert.Contains(t, err.Error(), "it needs patch on wukongs, as the edit role gives")
		assert.Equal(t, "Always", fw.w.Spec.RunStrategy)
	})
	t.Run("not found", func(t *testing.T) {
		f, _ := startFake(t, "Always", phase("Running"))
		_, _, err := f.run(nil, "stop", "nope")
		require.Error(t, err)
		assert.Equal(t, `wukongs.vm.novasphere.dev "nope" not found`, err.Error())
		assert.Equal(t, []string{"GET namespaces/ns1/wukongs/nope"}, f.calls())
	})
	t.Run("arguments", func(t *testing.T) {
		f, _ := startFake(t, "Always", phase("Running"))
		_, _, err := f.run(nil, "stop")
		require.Error(t, err)
		assert.Contains(t, err.Error(), "accepts 1 arg(s)")
		assert.Empty(t, f.calls())
	})
}

// TestStartStopCompletion: start and stop complete Wukong names, with a
// space after them (not NAME: as cp and ls do).
func TestStartStopCompletion(t *testing.T) {
	f := newFakeAPI(t)
	f.addVM(fakeNS, "vm1")
	f.addVM(fakeNS, "vm2")
	f.addVM(fakeNS, "db")
	f.addVM("other", "vm3")
	for _, args := range [][]string{{"start", "vm"}, {"stop", "vm"}} {
		out, _, err := f.run(nil, append([]string{"__complete"}, args...)...)
		require.NoError(t, err)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		assert.ElementsMatch(t, []string{"vm1", "vm2"}, lines[:len(lines)-1], args)
		assert.Equal(t, ":4", lines[len(lines)-1], "directive: no file completion")
	}
	out, _, err := f.run(nil, "__complete", "stop", "vm1", "")
	require.NoError(t, err)
	assert.Equal(t, ":4", strings.TrimSpace(out), "one argument only")
}
