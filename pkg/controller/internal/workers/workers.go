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

// Package workers runs a controller's work queue: it waits for the
// informers, hands keys to workers until the context ends, and returns only
// once every worker has finished its key.
package workers

import (
	"context"
	"sync"
	"time"

	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
)

// Run waits for the informers' caches, says what it starts doing (doing,
// in the log), then runs workers goroutines that take keys from queue and
// hand each to process, until ctx ends. Then it shuts the queue down and
// returns once every worker has finished its key, so that work cut by ctx
// has recorded how it ended. process decides what the queue does with a
// key (Forget, AddRateLimited, AddAfter); Run marks it Done.
func Run(ctx context.Context, name, doing string, queue workqueue.TypedRateLimitingInterface[string], synced []cache.InformerSynced, workers int, process func(context.Context, string)) {
	defer utilruntime.HandleCrash()
	defer queue.ShutDown()
	if !cache.WaitForNamedCacheSync(name, ctx.Done(), synced...) {
		return
	}
	klog.InfoS(doing, "controller", name, "workers", workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			wait.UntilWithContext(ctx, func(ctx context.Context) { work(ctx, queue, process) }, time.Second)
		})
	}
	<-ctx.Done()
	queue.ShutDown()
	wg.Wait()
}

// work processes keys until the queue shuts down.
func work(ctx context.Context, queue workqueue.TypedRateLimitingInterface[string], process func(context.Context, string)) {
	for {
		key, quit := queue.Get()
		if quit {
			return
		}
		process(ctx, key)
		queue.Done(key)
	}
}
