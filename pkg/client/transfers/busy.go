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

// A busy server (wukong-apiserver past its stream limits, or
// kube-apiserver's priority and fairness queues full) answers 429 with
// Retry-After. The client waits that long (at least its own backoff, at
// most MaxRetryAfter) and tries again, Retries times at most, saying so.

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// MaxRetryAfter caps the wait a server may ask for, so that a wrong header
// cannot park the client for hours.
const MaxRetryAfter = time.Minute

// retryAfter is the wait err asks for (a 429 or 5xx with Retry-After).
func retryAfter(err error) (time.Duration, bool) {
	secs, ok := apierrors.SuggestsClientDelay(err)
	if !ok || secs <= 0 {
		return 0, false
	}
	return min(time.Duration(secs)*time.Second, MaxRetryAfter), true
}

// pause waits before attempt+1 after err: backoff, or longer when the
// server asked for it; false when ctx ended first.
func (c *Client) pause(ctx context.Context, err error, backoff time.Duration, attempt int) bool {
	d := backoff
	if ra, ok := retryAfter(err); ok {
		d = max(d, ra)
		if apierrors.IsTooManyRequests(err) {
			c.notify(fmt.Sprintf("the server is busy: %s; retrying in %v (attempt %d of %d)", message(err), d.Round(100*time.Millisecond), attempt+1, c.Retries+1))
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// whileBusy runs f again while the server answers 429, Retries times at
// most: for requests that no other retry covers (a listing, a delete, the
// start of a stream). A 429 means the request was not served, so sending
// it again is safe whatever it does.
func (c *Client) whileBusy(ctx context.Context, f func() error) error {
	backoff := c.backoff()
	for attempt := 1; ; attempt++ {
		err := f()
		if !apierrors.IsTooManyRequests(err) || attempt > c.Retries {
			return err
		}
		if !c.pause(ctx, err, backoff.Step(), attempt) {
			return err
		}
	}
}

func (c *Client) notify(msg string) {
	if c.Notify != nil {
		c.Notify(msg)
	}
}

func message(err error) string {
	if st, ok := err.(apierrors.APIStatus); ok && st.Status().Message != "" {
		return st.Status().Message
	}
	return err.Error()
}

// headerRetryAfter reads a Retry-After of whole seconds (what Kubernetes
// servers send); 0 when there is none.
func headerRetryAfter(resp *http.Response) int {
	secs, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if err != nil || secs < 0 {
		return 0
	}
	return secs
}
