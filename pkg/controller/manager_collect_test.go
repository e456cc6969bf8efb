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

package controller

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestLeaderCollectsWithoutControllers: the replica that leads runs the
// record collector, with --controller=false too, until it stops leading,
// and lead returns only once the collector has.
func TestLeaderCollectsWithoutControllers(t *testing.T) {
	o := validOptions()
	o.NoControllers = true
	started, stopped := make(chan struct{}), make(chan struct{})
	o.Collect = func(ctx context.Context) {
		close(started)
		<-ctx.Done()
		close(stopped)
	}
	m, err := NewManager(o)
	require.NoError(t, err)
	ctx, stopLeading := context.WithCancel(context.Background())
	led := make(chan struct{})
	go func() {
		m.lead(ctx, nil) // no loopback: no controller may be built
		close(led)
	}()
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("the leader did not start the collector")
	}
	stopLeading()
	<-led
	select {
	case <-stopped:
	default:
		t.Fatal("lead returned before the collector stopped")
	}
}
