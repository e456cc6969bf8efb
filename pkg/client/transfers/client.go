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

// Package transfers is a client of the streaming subresources: wukongs/<name>/files
// (listings, deletes, files in and out) and disks/<name>/export and upload.
// Transfers of any size go through kube-apiserver as parallel chunks tied to
// one WukongFileTransfer (files, raw disk exports) or as one WebSocket stream
// (directories, stdin and stdout, gzip exports, disk uploads), which
// kube-apiserver does not time out.
package transfers

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/generated/clientset/versioned"
	vmclient "github.com/novasphere/wukong/pkg/generated/clientset/versioned/typed/vm/v1alpha1"
)

// Client moves files in and out of one Wukong, or one disk's bytes.
type Client struct {
	Namespace, Wukong string
	// Disk is the disk's name in the Wukong, for a disk's client; its
	// transfers name no path.
	Disk string

	config  *rest.Config
	http    *http.Client
	base    *url.URL // .../namespaces/NS/wukongs/NAME/files
	records vmclient.WukongFileTransferInterface

	// ChunkSize is the size of one request of a chunked transfer; each must
	// fit kube-apiserver's --request-timeout at the worst rate expected.
	ChunkSize int64
	// Parallel is how many chunks are in flight at once.
	Parallel int
	// Retries is how often one chunk is tried again after a failure that
	// may pass (a cut stream, a timeout, a 5xx) before the transfer fails.
	Retries int
	// Limiter, if set, paces the bytes of chunked transfers (--limit-rate).
	Limiter Limiter
	// ReadyTimeout bounds the wait for a disk's export or upload server
	// (DefaultReadyTimeout when 0).
	ReadyTimeout time.Duration
	// Notify, if set, tells the user what the client does on its own, such
	// as waiting for a busy server (the plugin prints it on stderr).
	Notify func(message string)
	// Params go with every request of the client: a disk export's format,
	// ttl and snapshot (SetExportOptions).
	Params url.Values
}

// Limiter paces bytes; *rate.Limiter from golang.org/x/time/rate is one.
type Limiter interface {
	WaitN(ctx context.Context, n int) error
	Burst() int
}

// Defaults chosen by measurement (see the README): every chunk costs a
// request, a record update and a range read, so below 32 MiB that cost shows
// (8 MiB chunks moved at a third of the rate of 24 MiB ones); 32 MiB still
// fits kube-apiserver's default 60 s down to ~600 KB/s per chunk. Four in
// flight overlap one chunk's overhead with another's bytes. Retries with
// backoff ride out about 40 s of a restarting or unreachable server.
const (
	DefaultChunkSize = 32 << 20
	DefaultParallel  = 4
	DefaultRetries   = 8
)

// New returns a client for the files of Wukong name in namespace.
func New(config *rest.Config, namespace, name string) (*Client, error) {
	c, err := newClient(config, namespace, "wukongs", name, "files")
	if err != nil {
		return nil, err
	}
	c.Wukong = name
	return c, nil
}

// ForDisk returns a client of disk d's subresource (export or upload).
func ForDisk(config *rest.Config, d *v1alpha1.Disk, subresource string) (*Client, error) {
	c, err := newClient(config, d.Namespace, "disks", d.Name, subresource)
	if err != nil {
		return nil, err
	}
	c.Wukong, c.Disk = d.Spec.WukongName, d.Spec.DiskName
	return c, nil
}

// newClient makes a client of one streaming subresource. Chunks go over
// HTTP/1.1, one connection per chunk in flight: kube-apiserver relays
// HTTP/1.1 faster than HTTP/2, whose streams share one connection's window.
func newClient(config *rest.Config, namespace, resource, name, subresource string) (*Client, error) {
	cfg := rest.CopyConfig(config)
	cfg.TLSClientConfig.NextProtos = []string{"http/1.1"}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, err
	}
	host, err := url.Parse(cfg.Host)
	if err != nil {
		return nil, fmt.Errorf("server %q: %w", cfg.Host, err)
	}
	if host.Scheme == "" {
		host, _ = url.Parse("https://" + cfg.Host)
	}
	base := host.JoinPath(cfg.APIPath, "/apis", v1alpha1.SchemeGroupVersion.Group, v1alpha1.SchemeGroupVersion.Version,
		"namespaces", namespace, resource, name, subresource)
	cs, err := versioned.NewForConfig(config)
	if err != nil {
		return nil, err
	}
	return &Client{
		Namespace: namespace,
		config:    config, http: hc, base: base,
		records:   cs.VmV1alpha1().WukongFileTransfers(namespace),
		ChunkSize: DefaultChunkSize, Parallel: DefaultParallel, Retries: DefaultRetries,
	}, nil
}

// Records is the client of this namespace's WukongFileTransfers.
func (c *Client) Records() vmclient.WukongFileTransferInterface { return c.records }

// query is the query of a request about remote (a path in the VM; nothing
// for a disk) with the parameters kv (name, value, ...).
func (c *Client) query(remote string, kv ...string) url.Values {
	q := url.Values{}
	for k, v := range c.Params {
		q[k] = append([]string(nil), v...)
	}
	if c.Disk == "" {
		q.Set("path", remote)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		q.Set(kv[i], kv[i+1])
	}
	return q
}

// spec is the record of a chunked transfer of remote the client opens.
func (c *Client) spec(op, remote string) v1alpha1.WukongFileTransferSpec {
	if c.Disk != "" {
		spec := v1alpha1.WukongFileTransferSpec{WukongName: c.Wukong, Operation: op, Disk: c.Disk}
		if op == v1alpha1.OperationDownload {
			// The chunks of the record are of its format.
			spec.Format = c.format()
		}
		return spec
	}
	return v1alpha1.WukongFileTransferSpec{WukongName: c.Wukong, Operation: op, RemotePath: remote}
}

// recordPrefix starts the names of the records the client opens.
func (c *Client) recordPrefix(op string) string {
	if c.Disk != "" {
		return c.Wukong + "-" + c.Disk + "-" + op + "-"
	}
	return c.Wukong + "-" + op + "-"
}

func (c *Client) url(q url.Values) string {
	u := *c.base
	u.RawQuery = q.Encode()
	return u.String()
}

// do sends one request and turns a non-2xx answer into the Status error it carries.
func (c *Client) do(ctx context.Context, method string, q url.Values, body io.Reader, size int64) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.url(q), body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.ContentLength = size
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, statusError(resp)
	}
	return resp, nil
}

// statusError decodes the metav1.Status of a failed answer.
func statusError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var st metav1.Status
	if json.Unmarshal(b, &st) == nil && st.Kind == "Status" {
		if st.Code == 0 {
			st.Code = int32(resp.StatusCode)
		}
		// The header counts when the body does not say (a proxy's answer).
		if secs := headerRetryAfter(resp); secs > 0 && (st.Details == nil || st.Details.RetryAfterSeconds == 0) {
			if st.Details == nil {
				st.Details = &metav1.StatusDetails{}
			}
			st.Details.RetryAfterSeconds = int32(secs)
		}
		return &apierrors.StatusError{ErrStatus: st}
	}
	msg := strings.TrimSpace(string(b))
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	// kube-apiserver's priority and fairness answers 429 in text, with
	// Retry-After. As in client-go, the cause marks an answer that was not
	// a Status (a HEAD's has no body).
	return apierrors.NewGenericServerResponse(resp.StatusCode, resp.Request.Method, v1alpha1.Resource("wukongs/files"), "", msg, headerRetryAfter(resp), true)
}

// List returns the entries of the directory at p.
func (c *Client) List(ctx context.Context, p string) (*v1alpha1.WukongFileList, error) {
	var resp *http.Response
	err := c.whileBusy(ctx, func() (err error) {
		resp, err = c.do(ctx, http.MethodGet, url.Values{"path": {p}}, nil, 0)
		return err
	})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return nil, fmt.Errorf("%s is not a directory", p)
	}
	var l v1alpha1.WukongFileList
	if err := json.NewDecoder(resp.Body).Decode(&l); err != nil {
		return nil, fmt.Errorf("decoding the listing of %s: %w", p, err)
	}
	return &l, nil
}

// Stat describes p, from the listing of its directory (a GET of a file
// would send its bytes). The root is a directory.
func (c *Client) Stat(ctx context.Context, p string) (*v1alpha1.FileInfo, error) {
	p = path.Clean(p)
	if p == "/" {
		return &v1alpha1.FileInfo{Name: "/", Type: "directory"}, nil
	}
	l, err := c.List(ctx, path.Dir(p))
	if err != nil {
		return nil, err
	}
	for i := range l.Items {
		if l.Items[i].Name == path.Base(p) {
			return &l.Items[i], nil
		}
	}
	return nil, apierrors.NewNotFound(v1alpha1.Resource("wukongs/files"), p)
}

// Delete removes p (a directory and all under it with recursive).
func (c *Client) Delete(ctx context.Context, p string, recursive bool) error {
	q := url.Values{"path": {p}}
	if recursive {
		q.Set("recursive", "true")
	}
	var resp *http.Response
	err := c.whileBusy(ctx, func() (err error) {
		resp, err = c.do(ctx, http.MethodDelete, q, nil, 0)
		return err
	})
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// WaitEnded waits until the record name is Succeeded or Failed and returns it.
func (c *Client) WaitEnded(ctx context.Context, name string) (*v1alpha1.WukongFileTransfer, error) {
	return c.waitEnded(ctx, name, nil)
}

// CommitResend is how often a client waiting for a commit sends it again.
// A server begins nothing for a commit under way, and takes over one whose
// server stopped (its record's heartbeat stopped; the server decides).
var CommitResend = 5 * time.Second

// waitEnded is WaitEnded; while the record is Committing it also calls
// commit every CommitResend, when set.
func (c *Client) waitEnded(ctx context.Context, name string, commit func() error) (*v1alpha1.WukongFileTransfer, error) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	failures := 0
	lastCommit := time.Now()
	for {
		rec, err := c.records.Get(ctx, name, metav1.GetOptions{})
		switch {
		case err != nil && Transient(err) && failures < c.Retries:
			// The replica that answered died or is going: the next
			// poll reaches another (a record is in etcd, not in a
			// replica).
			failures++
		case err != nil:
			return nil, err
		case ended(rec):
			return rec, nil
		default:
			failures = 0
			if commit != nil && rec.Status.Phase == v1alpha1.FileTransferPhaseCommitting && time.Since(lastCommit) >= CommitResend {
				lastCommit = time.Now()
				// What it answers matters not: the record says how the
				// commit ends (a refusal means it ended meanwhile).
				_ = commit()
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for transfer %s to end: %w", name, ctx.Err())
		case <-t.C:
		}
	}
}

func ended(rec *v1alpha1.WukongFileTransfer) bool {
	return rec.Status.Phase == v1alpha1.FileTransferPhaseSucceeded || rec.Status.Phase == v1alpha1.FileTransferPhaseFailed
}
