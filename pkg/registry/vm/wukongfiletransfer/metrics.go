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

package wukongfiletransfer

import (
	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"

	"github.com/novasphere/wukong/pkg/apis/vm"
	wmetrics "github.com/novasphere/wukong/pkg/metrics"
)

// bytesTotal counts every byte the files and disks subresources and pushes
// moved, as it passes, whatever the transport, by operation only: the
// first metric Wukong had, kept for the dashboards and tests that read it.
// wukong_transfer_bytes_total (pkg/metrics) splits the same bytes by kind
// and method.
var bytesTotal = metrics.NewCounterVec(&metrics.CounterOpts{
	Namespace:      "wukong",
	Name:           "file_transfer_bytes_total",
	Help:           "Bytes moved by file transfers, by operation (upload: received from clients; download: sent to clients).",
	StabilityLevel: metrics.ALPHA,
}, []string{"operation"})

// resentBytesTotal counts the bytes of chunked transfers that moved but
// added nothing: a chunk cut on the way (kube-apiserver's request timeout, a
// dropped client) or refused (a sha256 mismatch), and a range that was
// already done (a chunk sent again because its answer was lost). A steady
// rise says chunks are too large for the link; it also lets a resumed
// transfer be shown to send only what was missing, retries aside.
var resentBytesTotal = metrics.NewCounterVec(&metrics.CounterOpts{
	Namespace:      "wukong",
	Name:           "file_transfer_resent_bytes_total",
	Help:           "Bytes of chunked transfers that moved but added nothing (cut or refused chunks, ranges already done), by operation.",
	StabilityLevel: metrics.ALPHA,
}, []string{"operation"})

func init() {
	legacyregistry.MustRegister(bytesTotal, resentBytesTotal)
	// At 0 from the start, so that the share of resent bytes is defined
	// (and a dashboard shows it) before the first chunk is resent.
	for _, op := range []string{vm.OperationUpload, vm.OperationDownload} {
		bytesTotal.WithLabelValues(op)
		resentBytesTotal.WithLabelValues(op)
	}
}

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

// ChunkCounter is the Counter of one chunk of a chunked transfer. It also
// keeps the chunk's count: Recorder.AddChunk says how much of it the
// record had already, and Done counts that, or all of a chunk that never
// reached the record (cut, refused), as resent.
type ChunkCounter struct {
	Counter
	bytes     metrics.CounterMetric // wukong_transfer_bytes_total of the record's labels
	operation string
	n         int64
	again     int64 // what AddChunk found already done; -1 until it kept the chunk
}

// NewChunkCounter returns the ChunkCounter of a chunk of the transfer spec.
func NewChunkCounter(spec *vm.WukongFileTransferSpec) *ChunkCounter {
	return &ChunkCounter{Counter: CounterFor(spec.Operation), bytes: wmetrics.Bytes(wmetrics.For(spec)), operation: spec.Operation, again: -1}
}

func (c *ChunkCounter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	c.bytes.Add(float64(len(p)))
	return c.Counter.Write(p)
}

// Done counts what of the chunk added nothing as resent; handlers defer it.
func (c *ChunkCounter) Done() {
	again := c.again
	if again < 0 {
		again = c.n
	}
	if again > 0 {
		resentBytesTotal.WithLabelValues(c.operation).Add(float64(again))
	}
}
