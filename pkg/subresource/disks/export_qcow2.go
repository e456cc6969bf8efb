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

package disks

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	exportv1beta1 "kubevirt.io/api/export/v1beta1"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/subresource/stream"
	"github.com/novasphere/wukong/pkg/transfer/qcow2"
)

// formatQcow2 is this server's format, not KubeVirt's: its export server
// serves raw and gzip, and the qcow2 image is written here from the raw
// volume as it streams (pkg/transfer/qcow2, the writer pushes use).
const formatQcow2 exportv1beta1.ExportVolumeFormat = vm.DiskFormatQcow2

// exportFormat is the format o asks for.
func exportFormat(o *vm.DiskExportOptions) exportv1beta1.ExportVolumeFormat {
	switch o.Format {
	case vm.DiskFormatGzip:
		return exportv1beta1.KubeVirtGz
	case vm.DiskFormatQcow2:
		return formatQcow2
	}
	return exportv1beta1.KubeVirtRaw
}

// sameFormat refuses a chunk of a chunked export in another format than its
// record's: ranges of two formats would make a file of neither.
func sameFormat(rec *vm.WukongFileTransfer, format exportv1beta1.ExportVolumeFormat) error {
	have := rec.Spec.Format
	if have == "" {
		have = vm.DiskFormatRaw
	}
	if have != string(format) {
		return apierrors.NewBadRequest(fmt.Sprintf("transfer %s is an export in format %s, not %s", rec.Name, have, format))
	}
	return nil
}

// openQcow2 answers as the export server would if it served the qcow2 image
// of the disk: its size (HEAD), the range rng of it, or all of it. Every
// cluster of the image is allocated in order, so its layout follows from the
// disk's size, and a range of the image is made from one range of the raw
// volume: the image goes in ranges, and resumes, like the raw disk. The
// size comes from a HEAD to the export server, or, for the whole image,
// from the one GET of the whole disk.
func (r *ExportREST) openQcow2(ctx context.Context, w *vm.Wukong, d *vm.Disk, method, rng string) (*http.Response, error) {
	var raw *http.Response
	if method == http.MethodGet && rng == "" {
		resp, err := r.open(ctx, w, d, http.MethodGet, exportv1beta1.KubeVirtRaw, "")
		if err != nil {
			return nil, err
		}
		raw = resp
	} else {
		head, err := r.open(ctx, w, d, http.MethodHead, exportv1beta1.KubeVirtRaw, "")
		if err != nil {
			return nil, err
		}
		head.Body.Close()
		raw = head
		raw.Body = nil
	}
	closeRaw := func() {
		if raw.Body != nil {
			raw.Body.Close()
		}
	}
	size := raw.ContentLength
	if raw.StatusCode != http.StatusOK || size < 0 {
		closeRaw()
		return nil, stream.BadGateway(fmt.Sprintf("the export server answered %s with no size for disk %s; a qcow2 image needs it", raw.Status, d.Spec.DiskName))
	}
	total := qcow2.Size(size)
	start, n, partial, err := stream.Range(nil, nil, rng, total, "the qcow2 image of disk "+d.Spec.DiskName)
	if err != nil {
		closeRaw()
		return nil, err
	}
	out := &http.Response{StatusCode: http.StatusOK, Status: "200 OK", ContentLength: n, Header: http.Header{}, Body: http.NoBody}
	out.Header.Set("Content-Type", "application/octet-stream")
	out.Header.Set("Content-Length", strconv.FormatInt(n, 10))
	out.Header.Set("Accept-Ranges", "bytes")
	if etag := raw.Header.Get("ETag"); etag != "" {
		// Another representation of the same volume: another tag.
		weak, tag := "", etag
		if t, ok := strings.CutPrefix(etag, "W/"); ok {
			weak, tag = "W/", t
		}
		out.Header.Set("ETag", weak+`"`+strings.Trim(tag, `"`)+`-qcow2"`)
	}
	if lm := raw.Header.Get("Last-Modified"); lm != "" {
		out.Header.Set("Last-Modified", lm)
	}
	if partial {
		out.StatusCode, out.Status = http.StatusPartialContent, "206 Partial Content"
		out.Header.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, start+n-1, total))
	}
	if method == http.MethodHead {
		return out, nil
	}
	rawOff, rawLen := qcow2.Span(size, start, n)
	if raw.Body == nil && rawLen > 0 {
		if raw, err = r.rawRange(ctx, w, d, size, rawOff, rawLen); err != nil {
			return nil, err
		}
	}
	var body io.ReadCloser = http.NoBody
	if raw.Body != nil {
		body = raw.Body
	}
	out.Body = struct {
		io.Reader
		io.Closer
	}{qcow2.NewRangeReader(body, size, start, n), body}
	return out, nil
}

// rawRange reads n bytes of the raw volume from off, checking that the
// export server sent that range of a disk of size bytes.
func (r *ExportREST) rawRange(ctx context.Context, w *vm.Wukong, d *vm.Disk, size, off, n int64) (*http.Response, error) {
	resp, err := r.open(ctx, w, d, http.MethodGet, exportv1beta1.KubeVirtRaw, fmt.Sprintf("bytes=%d-%d", off, off+n-1))
	if err != nil {
		return nil, err
	}
	start, total, ok := contentRange(resp)
	if !ok || start != off || total != size || resp.ContentLength != n {
		resp.Body.Close()
		return nil, stream.BadGateway(fmt.Sprintf("the export server sent %s (%q, %d bytes) when asked for bytes %d-%d of disk %s (%d bytes)",
			resp.Status, resp.Header.Get("Content-Range"), resp.ContentLength, off, off+n-1, d.Spec.DiskName, size))
	}
	return resp, nil
}
