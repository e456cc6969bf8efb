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
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"

	"github.com/novasphere/wukong/pkg/controller/exporttarget"
)

func TestNewManagerChecksItsOptions(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*ManagerOptions)
	}{
		{"no cluster config", func(o *ManagerOptions) { o.Cluster = nil }},
		{"no kube clientset", func(o *ManagerOptions) { o.Kube = nil }},
		{"no exporter", func(o *ManagerOptions) { o.Exporter = nil }},
		{"no recorder", func(o *ManagerOptions) { o.Recorder = nil }},
		{"no Lease name", func(o *ManagerOptions) { o.Leader.Name = "" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := validOptions()
			tc.change(&o)
			_, err := NewManager(o)
			assert.Error(t, err)
		})
	}
	_, err := NewManager(validOptions())
	assert.NoError(t, err)
}

// controllers stands in for the two controllers' Run: each runs until its
// context ends, then takes linger to record how it ended.
type controllers struct {
	linger                time.Duration
	vmsStarted, pushesRan chan struct{}
	vmsEnded, pushesEnded atomic.Bool
	pushesStarted         atomic.Int32
}

func newControllers(linger time.Duration) *controllers {
	return &controllers{linger: linger, vmsStarted: make(chan struct{}, 8), pushesRan: make(chan struct{}, 8)}
}

func (c *controllers) vms(ctx context.Context, _ int) {
	c.vmsStarted <- struct{}{}
	<-ctx.Done()
	c.vmsEnded.Store(true)
}

func (c *controllers) pushes(ctx context.Context, _ int) {
	c.pushesStarted.Add(1)
	c.pushesRan <- struct{}{}
	<-ctx.Done()
	time.Sleep(c.linger)
	c.pushesEnded.Store(true)
}

func validOptions() ManagerOptions {
	return ManagerOptions{
		Cluster: &rest.Config{}, Kube: &fake.Clientset{}, // only held
		Leader:   LeaderOptions{Namespace: "wukong-system", Name: "wukong-controller"},
		Exporter: fakeExporter{}, Recorder: fakeRecorder{},
	}
}

func newTestManager(t *testing.T) *Manager {
	t.Helper()
	m, err := NewManager(validOptions())
	require.NoError(t, err)
	return m
}

func TestDrain(t *testing.T) {
	t.Run("cuts the pushes alone and waits for them to record their end", func(t *testing.T) {
		m := newTestManager(t)
		c := newControllers(200 * time.Millisecond)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		ran := make(chan struct{})
		go func() { m.run(ctx, c.vms, c.pushes); close(ran) }()
		<-c.vmsStarted
		<-c.pushesRan

		start := time.Now()
		require.NoError(t, m.Drain())
		assert.True(t, c.pushesEnded.Load(), "Drain returned before the pushes recorded their end")
		assert.GreaterOrEqual(t, time.Since(start), c.linger)
		assert.False(t, c.vmsEnded.Load(), "the VM controller runs on until the server stops it")

		cancel()
		<-ran
		assert.True(t, c.vmsEnded.Load())
	})

	t.Run("gives up after its timeout", func(t *testing.T) {
		m := newTestManager(t)
		m.timeout = 100 * time.Millisecond
		c := newControllers(time.Hour)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go m.run(ctx, c.vms, c.pushes)
		<-c.pushesRan

		start := time.Now()
		require.NoError(t, m.Drain())
		assert.Less(t, time.Since(start), 5*time.Second)
		assert.False(t, c.pushesEnded.Load())
	})

	t.Run("no push starts after it", func(t *testing.T) {
		m := newTestManager(t)
		require.NoError(t, m.Drain())
		c := newControllers(0)
		ctx, cancel := context.WithCancel(context.Background())
		ran := make(chan struct{})
		go func() { m.run(ctx, c.vms, c.pushes); close(ran) }()
		<-c.vmsStarted
		cancel()
		<-ran
		m.pushing.Wait() // a push that started has ended
		assert.Zero(t, c.pushesStarted.Load())
	})

	t.Run("losing the Lease stops both; leading again starts both", func(t *testing.T) {
		m := newTestManager(t)
		c := newControllers(0)
		for range 2 {
			ctx, cancel := context.WithCancel(context.Background())
			ran := make(chan struct{})
			go func() { m.run(ctx, c.vms, c.pushes); close(ran) }()
			<-c.vmsStarted
			<-c.pushesRan
			cancel()
			<-ran
			assert.True(t, c.vmsEnded.Load())
			require.Eventually(t, c.pushesEnded.Load, 5*time.Second, 10*time.Millisecond)
		}
		assert.EqualValues(t, 2, c.pushesStarted.Load())
	})
}

// fakeExporter and fakeRecorder only fill ManagerOptions: the manager's
// tests run stand-ins for the controllers.
type fakeExporter struct{ exporttarget.Exporter }
type fakeRecorder struct{ exporttarget.Recorder }
