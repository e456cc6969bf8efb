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

package transfers

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

type waiter struct {
	noProgress
	mu   sync.Mutex
	seen []string
}

func (w *waiter) Waiting(msg string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seen = append(w.seen, msg)
}

// TestWhenReadyShowsTheWait: a Waiter hears the wait, with the server's
// reason and the time waited, as often as a spinner turns; Notify is left
// for a progress that cannot show it.
func TestWhenReadyShowsTheWait(t *testing.T) {
	notReady := &apierrors.StatusError{ErrStatus: metav1.Status{Code: http.StatusServiceUnavailable, Reason: metav1.StatusReasonServiceUnavailable,
		Message: "the VirtualMachineSnapshot s1 is InProgress; retry shortly", Details: &metav1.StatusDetails{RetryAfterSeconds: 1}}}
	c := &Client{Disk: "system", base: &url.URL{Path: "/apis/x/disks/vm1-system/export"}}
	var notified []string
	c.Notify = func(m string) { notified = append(notified, m) }
	w := &waiter{}
	calls := 0
	err := c.whenReady(context.Background(), w, func() error {
		if calls++; calls < 2 {
			return notReady
		}
		return nil
	})
	if err != nil || calls != 2 {
		t.Fatalf("err %v after %d calls", err, calls)
	}
	if len(notified) != 0 {
		t.Fatalf("notified %q beside the spinner", notified)
	}
	if len(w.seen) < 3 {
		t.Fatalf("the spinner turned %d times in a 1 s wait", len(w.seen))
	}
	if want := "waiting for KubeVirt to prepare the export of disk system: the VirtualMachineSnapshot s1 is InProgress ("; !strings.HasPrefix(w.seen[0], want) {
		t.Fatalf("first line %q, want %q...", w.seen[0], want)
	}

	// Without a Waiter: Notify, once per reason.
	calls = 0
	start := time.Now()
	err = c.whenReady(context.Background(), noProgress{}, func() error {
		if calls++; calls < 3 {
			return notReady
		}
		return nil
	})
	if err != nil || len(notified) != 1 || time.Since(start) < 2*time.Second {
		t.Fatalf("err %v, notified %q", err, notified)
	}
}
