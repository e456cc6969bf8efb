package record

import (
	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"
)

// bytesTotal counts every byte the files subresource moved, as it passes,
// whatever the transport: operators see throughput, and a resumed transfer
// can be shown to send only what was missing.
var bytesTotal = metrics.NewCounterVec(&metrics.CounterOpts{
	Namespace:      "wukong",
	Name:           "file_transfer_bytes_total",
	Help:           "Bytes moved by file transfers, by operation (upload: received from clients; download: sent to clients).",
	StabilityLevel: metrics.ALPHA,
}, []string{"operation"})

func init() { legacyregistry.MustRegister(bytesTotal) }

// Counter is an io.Writer that counts the bytes of one operation into
// wukong_file_transfer_bytes_total; it never fails.
type Counter struct{ c metrics.CounterMetric }

// CounterFor returns the Counter of operation (upload or download).
func CounterFor(operation string) Counter {
	return Counter{bytesTotal.WithLabelValues(operation)}
}

func (c Counter) Write(p []byte) (int, error) {
	c.c.Add(float64(len(p)))
	return len(p), nil
}
