package disk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/registry/rest"
	exportv1beta1 "kubevirt.io/api/export/v1beta1"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/registry/errstatus"
	"github.com/novasphere/wukong/pkg/transfer/export"
	"github.com/novasphere/wukong/pkg/transfer/record"
)

// ExportREST serves disks/<name>/export: the disk's volume, streamed from
// KubeVirt's export server through this server, so that RBAC on
// disks/export decides and the export token stays here.
type ExportREST struct {
	disks    *REST
	wukongs  rest.Getter
	exporter *export.Exporter
	recorder *record.Recorder
}

var _ rest.Connecter = &ExportREST{}

// NewExportREST returns the export subresource.
func NewExportREST(disks *REST, wukongs rest.Getter, exporter *export.Exporter, recorder *record.Recorder) *ExportREST {
	return &ExportREST{disks: disks, wukongs: wukongs, exporter: exporter, recorder: recorder}
}

func (r *ExportREST) New() runtime.Object      { return &vm.DiskExportOptions{} }
func (r *ExportREST) Destroy()                 {}
func (r *ExportREST) ConnectMethods() []string { return []string{http.MethodGet} }
func (r *ExportREST) NewConnectOptions() (runtime.Object, bool, string) {
	return &vm.DiskExportOptions{}, false, ""
}

// retryAfter is how long a client waits before asking again for an export
// that is not ready.
const retryAfter = 2

// Connect checks the options and the disk, then streams.
func (r *ExportREST) Connect(ctx context.Context, name string, options runtime.Object, responder rest.Responder) (http.Handler, error) {
	o := options.(*vm.DiskExportOptions)
	format := exportv1beta1.KubeVirtRaw
	switch o.Format {
	case "", "raw":
	case "gzip":
		format = exportv1beta1.KubeVirtGz
		if o.Offset != nil || o.Length != nil {
			return nil, apierrors.NewBadRequest("offset and length apply to format=raw: a gzip stream has no byte ranges")
		}
	default:
		return nil, apierrors.NewBadRequest(fmt.Sprintf("format %q: use raw or gzip", o.Format))
	}
	if (o.Offset != nil && *o.Offset < 0) || (o.Length != nil && *o.Length < 0) {
		return nil, apierrors.NewBadRequest("offset and length must not be negative")
	}
	obj, err := r.disks.Get(ctx, name, &metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	d := obj.(*vm.Disk)
	wobj, err := r.wukongs.Get(ctx, d.Spec.WukongName, &metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	w := wobj.(*vm.Wukong)
	return http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		if err := r.stream(req.Context(), w, d, format, o, rw, req); err != nil {
			// The Status's retryAfterSeconds becomes a Retry-After header.
			responder.Error(err)
		}
	}), nil
}

// stream copies the volume from the export server to the client and
// records the transfer.
func (r *ExportREST) stream(ctx context.Context, w *vm.Wukong, d *vm.Disk, format exportv1beta1.ExportVolumeFormat, o *vm.DiskExportOptions, rw http.ResponseWriter, req *http.Request) error {
	src, err := r.exporter.Source(ctx, w.Namespace, d.Status.ClaimName, format)
	var notReady *export.NotReadyError
	if errors.As(err, &notReady) {
		return &apierrors.StatusError{ErrStatus: metav1.Status{
			Status: metav1.StatusFailure, Code: http.StatusServiceUnavailable, Reason: metav1.StatusReasonServiceUnavailable,
			Message: notReady.Error() + "; retry shortly", Details: &metav1.StatusDetails{Name: d.Name, Kind: "disks", RetryAfterSeconds: retryAfter},
		}}
	}
	if err != nil {
		return errstatus.BadGateway(err.Error())
	}
	up, err := http.NewRequestWithContext(ctx, http.MethodGet, src.URL, nil)
	if err != nil {
		return err
	}
	up.Header.Set(export.TokenHeader, src.Token)
	switch {
	case o.Offset != nil || o.Length != nil:
		var start int64
		if o.Offset != nil {
			start = *o.Offset
		}
		rng := fmt.Sprintf("bytes=%d-", start)
		if o.Length != nil {
			if *o.Length == 0 {
				return apierrors.NewBadRequest("length=0 asks for no bytes")
			}
			rng = fmt.Sprintf("bytes=%d-%d", start, start+*o.Length-1)
		}
		up.Header.Set("Range", rng)
	case req.Header.Get("Range") != "" && format == exportv1beta1.KubeVirtRaw:
		up.Header.Set("Range", req.Header.Get("Range"))
	}
	resp, err := src.Client.Do(up)
	if err != nil {
		// The URL holds no secret, the token travels in a header.
		return errstatus.BadGateway(fmt.Sprintf("reaching the export server of %s: %v", src.Export, err))
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK, http.StatusPartialContent:
	case http.StatusRequestedRangeNotSatisfiable:
		return errstatus.New(http.StatusRequestedRangeNotSatisfiable, "", "the range lies outside the disk: "+resp.Header.Get("Content-Range"))
	default:
		return errstatus.BadGateway(fmt.Sprintf("the export server of %s answered %s", src.Export, resp.Status))
	}
	spec := vm.WukongFileTransferSpec{WukongName: w.Name, Operation: vm.OperationDownload, Disk: d.Spec.DiskName}
	t, err := r.recorder.Start(ctx, w, spec, resp.ContentLength)
	if err != nil {
		return err
	}
	for _, h := range []string{"Content-Type", "Content-Length", "Content-Range", "Accept-Ranges", "ETag", "Last-Modified"} {
		if v := resp.Header.Get(h); v != "" {
			rw.Header().Set(h, v)
		}
	}
	rw.Header().Set(v1alpha1.TransferHeader, t.Name())
	rw.WriteHeader(resp.StatusCode)
	n, err := io.CopyBuffer(io.MultiWriter(rw, t), resp.Body, make([]byte, 1<<20))
	if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
		err = fmt.Errorf("%d of %d bytes", n, resp.ContentLength)
	}
	if err != nil {
		t.Fail(fmt.Sprintf("the export of disk %s broke after %d bytes: %v", d.Spec.DiskName, n, err))
		// Cut the stream: the client must not take it for complete.
		panic(http.ErrAbortHandler)
	}
	t.Succeed(fmt.Sprintf("exported %d bytes of disk %s (%s)", n, d.Spec.DiskName, format))
	return nil
}
