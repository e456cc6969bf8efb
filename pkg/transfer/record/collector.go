package record

import (
	"context"
	"time"

	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/klog/v2"

	"github.com/novasphere/wukong/pkg/apis/vm"
)

// Store is what the collector needs of the records' storage.
type Store interface {
	rest.Lister
	rest.GracefulDeleter
}

// Collector deletes finished records older than a retention, so that etcd
// holds the recent history of transfers rather than all of it.
type Collector struct {
	store     Store
	retention time.Duration
}

// NewCollector returns a collector of records finished more than retention ago.
func NewCollector(store Store, retention time.Duration) *Collector {
	return &Collector{store: store, retention: retention}
}

// Run collects every retention/10 (at most every minute) until ctx is done.
func (c *Collector) Run(ctx context.Context) {
	period := min(c.retention/10, time.Minute)
	period = max(period, time.Second)
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		if n, err := c.Collect(ctx, time.Now()); err != nil {
			klog.ErrorS(err, "Collecting old transfer records")
		} else if n > 0 {
			klog.V(2).InfoS("Collected old transfer records", "count", n)
		}
	}, period)
}

// Collect deletes the records that finished before now-retention.
func (c *Collector) Collect(ctx context.Context, now time.Time) (int, error) {
	ctx = genericapirequest.WithNamespace(ctx, metav1.NamespaceAll)
	obj, err := c.store.List(ctx, &metainternalversion.ListOptions{})
	if err != nil {
		return 0, err
	}
	deleted := 0
	for _, t := range obj.(*vm.WukongFileTransferList).Items {
		done := t.Status.CompletedAt
		if done == nil || now.Sub(done.Time) < c.retention {
			continue
		}
		dctx := genericapirequest.WithNamespace(ctx, t.Namespace)
		uid := t.UID
		if _, _, err := c.store.Delete(dctx, t.Name, rest.ValidateAllObjectFunc, &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}}); err != nil {
			klog.ErrorS(err, "Deleting an old transfer record", "record", klog.KObj(&t))
			continue
		}
		deleted++
	}
	return deleted, nil
}
