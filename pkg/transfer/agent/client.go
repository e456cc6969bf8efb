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

package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/novasphere/wukong/pkg/transfer/archive"
	"github.com/novasphere/wukong/pkg/transfer/files"
)

// ClientConfig says how to reach one agent.
type ClientConfig struct {
	// Address is host:port of the agent (the VMI's address, or its Service).
	Address string
	// TLS is the configuration to dial with; when nil, one is built that
	// trusts CAPEM only and expects ServerName.
	TLS *tls.Config
	// CAPEM is the agent's certificate (or its CA) in PEM: the only one
	// trusted for the agent, whatever the system roots say.
	CAPEM []byte
	// ServerName is the name the agent's certificate must carry.
	ServerName string
	// Token is the bearer token the agent expects.
	Token string
	// DialTimeout bounds connecting and the TLS handshake (default 10s).
	DialTimeout time.Duration
}

// Client is a guest's filesystem reached through its wukong-agent. It has
// the methods of pkg/transfer/files.FS (the files subresource's GuestFS),
// with the same errors, so that the handlers serve method http as they
// serve ssh. It is safe for concurrent use; Close cuts every request in
// flight.
type Client struct {
	base   url.URL
	hc     *http.Client
	token  string
	ctx    context.Context
	cancel context.CancelFunc
}

// NewClient returns a client of the agent cfg describes.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.Address == "" || cfg.Token == "" {
		return nil, errors.New("an agent client needs the agent's address and token")
	}
	tc := cfg.TLS
	if tc == nil {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(cfg.CAPEM) {
			return nil, errors.New("the agent's CA holds no PEM certificate")
		}
		tc = &tls.Config{RootCAs: pool, ServerName: cfg.ServerName, MinVersion: tls.VersionTLS12}
	} else {
		tc = tc.Clone()
	}
	if tc.RootCAs == nil && tc.VerifyPeerCertificate == nil && !tc.InsecureSkipVerify {
		// Never the system roots: the agent's certificate is pinned.
		return nil, errors.New("the agent client's TLS configuration must name the agent's CA (RootCAs)")
	}
	dt := cfg.DialTimeout
	if dt == 0 {
		dt = 10 * time.Second
	}
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: dt, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     tc,
		TLSHandshakeTimeout: dt,
		IdleConnTimeout:     90 * time.Second,
		MaxIdleConnsPerHost: 8,
		// The agent speaks HTTP/1.1: one stream per connection, whose
		// deadlines are the stream's.
		ForceAttemptHTTP2: false,
		Proxy:             nil,
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Client{
		base:   url.URL{Scheme: "https", Host: cfg.Address},
		hc:     &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		token:  cfg.Token,
		ctx:    ctx,
		cancel: cancel,
	}, nil
}

// Close cuts every request in flight and closes idle connections.
func (c *Client) Close() {
	c.cancel()
	c.hc.CloseIdleConnections()
}

// request is one call to the agent.
type request struct {
	method, path string
	q            url.Values
	body         io.Reader
	header       http.Header
}

// do sends r under ctx (and the client's own context) and returns the
// response of a 2xx status; anything else is turned into the agent's
// *Error. The caller closes the body.
func (c *Client) do(ctx context.Context, r request) (*http.Response, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(c.ctx, cancel)
	u := c.base
	u.Path = r.path
	u.RawQuery = r.q.Encode()
	req, err := http.NewRequestWithContext(ctx, r.method, u.String(), r.body)
	if err != nil {
		stop()
		cancel()
		return nil, err
	}
	if r.body != nil {
		req.ContentLength = -1 // streamed; the size, when known, is a parameter
	}
	for k, v := range r.header {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.hc.Do(req)
	if err != nil {
		stop()
		cancel()
		return nil, fmt.Errorf("wukong-agent at %s: %w", c.base.Host, err)
	}
	resp.Body = &cancelBody{ReadCloser: resp.Body, done: func() { stop(); cancel() }}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, decodeError(resp)
	}
	return resp, nil
}

// decodeError reads the agent's Error, or makes one of the status.
func decodeError(resp *http.Response) error {
	e := &Error{Status: resp.StatusCode}
	if resp.StatusCode == http.StatusUnauthorized {
		e.Reason, e.Message = ReasonUnauthorized, "wukong-agent refused the token (401): the token in its Secret and the agent's token file differ"
		return e
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(b, e) != nil || e.Reason == "" {
		e.Reason = ReasonInternal
		e.Message = fmt.Sprintf("wukong-agent answered %s", resp.Status)
	}
	e.Status = resp.StatusCode
	return e
}

type cancelBody struct {
	io.ReadCloser
	done func()
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.done()
	return err
}

func (c *Client) getJSON(ctx context.Context, r request, out any) error {
	resp, err := c.do(ctx, r)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("wukong-agent at %s: reading its answer: %w", c.base.Host, err)
	}
	return nil
}

func pathQuery(p string) url.Values { return url.Values{"path": {p}} }

func setBool(q url.Values, k string, b bool) {
	if b {
		q.Set(k, "true")
	}
}

func setInt(q url.Values, k string, n int64) {
	if n > 0 {
		q.Set(k, strconv.FormatInt(n, 10))
	}
}

func setMode(q url.Values, m *os.FileMode) {
	if m != nil {
		q.Set("mode", strconv.FormatUint(uint64(m.Perm()), 8))
	}
}

// fileInfo is a FileInfo as os.FileInfo.
type fileInfo struct{ FileInfo }

func (f fileInfo) Name() string       { return f.FileInfo.Name }
func (f fileInfo) Size() int64        { return f.FileInfo.Size }
func (f fileInfo) Mode() os.FileMode  { return f.FileInfo.Mode }
func (f fileInfo) ModTime() time.Time { return f.FileInfo.ModTime }
func (f fileInfo) IsDir() bool        { return f.FileInfo.Mode.IsDir() }
func (f fileInfo) Sys() any           { return nil }

// Version asks the agent its version and roots.
func (c *Client) Version(ctx context.Context) (VersionResponse, error) {
	var v VersionResponse
	err := c.getJSON(ctx, request{method: http.MethodGet, path: PathVersion}, &v)
	return v, err
}

// Stat follows symlinks, as a download does.
func (c *Client) Stat(p string) (os.FileInfo, error) {
	var fi FileInfo
	if err := c.getJSON(c.ctx, request{method: http.MethodGet, path: PathStat, q: pathQuery(p)}, &fi); err != nil {
		return nil, err
	}
	return fileInfo{fi}, nil
}

// Read writes length bytes of the file at p from offset to w; size is the
// file's size as Stat saw it, so that a file that changed meanwhile fails.
func (c *Client) Read(ctx context.Context, p string, offset, length, size int64, w io.Writer) (int64, error) {
	if length == 0 {
		return 0, nil
	}
	h := http.Header{}
	h.Set("Range", fmt.Sprintf("bytes=%d-%d", offset, offset+length-1))
	resp, err := c.do(ctx, request{method: http.MethodGet, path: PathFile, q: pathQuery(p), header: h})
	if err != nil {
		var ae *Error
		if errors.As(err, &ae) && ae.Status == http.StatusRequestedRangeNotSatisfiable {
			return 0, fmt.Errorf("the file changed while it was read: bytes %d-%d of %d are no longer there", offset, offset+length-1, size)
		}
		return 0, err
	}
	defer resp.Body.Close()
	if total := contentRangeTotal(resp); total >= 0 && total != size {
		return 0, fmt.Errorf("the file changed while it was read: it has %d bytes, %d when it was looked at", total, size)
	}
	n, err := io.CopyBuffer(w, io.LimitReader(resp.Body, length), make([]byte, 256<<10))
	if err == nil && n != length {
		err = fmt.Errorf("the file changed while it was read: %d of %d bytes", n, length)
	}
	return n, err
}

// contentRangeTotal is the complete length a 206 names, or the length of a
// whole-file 200; -1 when unknown.
func contentRangeTotal(resp *http.Response) int64 {
	if resp.StatusCode == http.StatusOK {
		return resp.ContentLength
	}
	var a, b, total int64
	if _, err := fmt.Sscanf(resp.Header.Get("Content-Range"), "bytes %d-%d/%d", &a, &b, &total); err != nil {
		return -1
	}
	return total
}

// List returns the entries of the directory p, at most max (0: no limit).
func (c *Client) List(ctx context.Context, p string, max int) ([]files.Entry, error) {
	q := pathQuery(p)
	setInt(q, "max", int64(max))
	var lr ListResponse
	if err := c.getJSON(ctx, request{method: http.MethodGet, path: PathList, q: q}, &lr); err != nil {
		return nil, err
	}
	out := make([]files.Entry, 0, len(lr.Entries))
	for _, e := range lr.Entries {
		out = append(out, files.Entry{Name: e.Name, Info: fileInfo{e}, LinkTarget: e.LinkTarget})
	}
	return out, nil
}

// WriteTar writes the directory root to w as a tar stream (gzipped when
// asked). A failure after the first byte is the agent's (its trailer).
func (c *Client) WriteTar(ctx context.Context, root string, w io.Writer, opts archive.WriteOptions) (archive.Stats, error) {
	q := pathQuery(root)
	setBool(q, "gzip", opts.Gzip)
	setInt(q, "maxEntries", opts.MaxEntries)
	resp, err := c.do(ctx, request{method: http.MethodGet, path: PathTar, q: q})
	if err != nil {
		return archive.Stats{}, err
	}
	defer resp.Body.Close()
	if _, err := io.CopyBuffer(w, resp.Body, make([]byte, 256<<10)); err != nil {
		return archive.Stats{}, err
	}
	if t := resp.Trailer.Get(ErrorTrailer); t != "" {
		e := &Error{}
		if json.Unmarshal([]byte(t), e) != nil || e.Reason == "" {
			e = &Error{Status: http.StatusInternalServerError, Reason: ReasonInternal, Message: "the tar failed: " + t}
		}
		return archive.Stats{}, e
	}
	var st archive.Stats
	t := resp.Trailer.Get(StatsTrailer)
	if t == "" || json.Unmarshal([]byte(t), &st) != nil {
		return st, fmt.Errorf("wukong-agent at %s: the tar of %s ended without its trailer", c.base.Host, root)
	}
	return st, nil
}

// ExtractTar extracts the tar stream r under the directory dest, creating
// dest first when createParents is set.
func (c *Client) ExtractTar(ctx context.Context, dest string, r io.Reader, createParents bool, opts archive.ExtractOptions) (archive.Stats, error) {
	q := pathQuery(dest)
	setBool(q, "createParents", createParents)
	setBool(q, "gzip", opts.Gzip)
	setBool(q, "noClobber", opts.NoClobber)
	setInt(q, "maxBytes", opts.MaxBytes)
	setInt(q, "maxEntries", opts.MaxEntries)
	setInt(q, "maxHeaderBytes", opts.MaxHeaderBytes)
	body := &sendBody{r: r}
	defer body.stop()
	var st archive.Stats
	err := c.getJSON(ctx, request{method: http.MethodPut, path: PathTar, q: q, body: body}, &st)
	return st, body.cause(err)
}

// Upload writes body to target atomically (see files.Upload); opts.Observer
// sees every byte sent.
func (c *Client) Upload(ctx context.Context, target string, body io.Reader, opts files.UploadOptions) (files.UploadResult, error) {
	if opts.MaxBytes > 0 && opts.Size > opts.MaxBytes {
		return files.UploadResult{}, fmt.Errorf("%w: %d bytes announced, the limit is %d", files.ErrTooLarge, opts.Size, opts.MaxBytes)
	}
	q := pathQuery(target)
	setMode(q, opts.Mode)
	setBool(q, "createParents", opts.CreateParents)
	setBool(q, "noClobber", opts.NoClobber)
	if opts.SHA256 != "" {
		q.Set("sha256", opts.SHA256)
	}
	if opts.Size >= 0 {
		q.Set("size", strconv.FormatInt(opts.Size, 10))
	}
	setInt(q, "maxBytes", opts.MaxBytes)
	// The client names the temporary file, so that it can say which one to
	// remove (a *files.LeftoverError) when the agent could not: it died or
	// the connection broke before it answered.
	suffix := randomSuffix()
	q.Set("tmp", suffix)
	tmp := path.Join(path.Dir(target), files.TempName(files.TempPrefix+suffix+"-", path.Base(target)))
	if opts.Observer != nil {
		body = io.TeeReader(body, opts.Observer)
	}
	sb := &sendBody{r: body}
	defer sb.stop()
	var res UploadResponse
	if err := c.getJSON(ctx, request{method: http.MethodPut, path: PathFile, q: q, body: sb}, &res); err != nil {
		var answered *Error
		if errors.As(err, &answered) {
			// The agent answered: it removed its file itself.
			return files.UploadResult{}, sb.cause(err)
		}
		return files.UploadResult{}, &files.LeftoverError{Path: tmp, Err: sb.cause(err)}
	}
	return files.UploadResult{Bytes: res.Bytes, SHA256: res.SHA256, Created: res.Created}, nil
}

// sendBody remembers the error of the body being sent: when the client's
// own stream breaks, that, not the agent's answer to the cut, is the cause.
// Once the call is over (stop) it starts no more reads: the transport may
// still be sending when an early answer (a refusal) arrives. A read already
// in flight is not waited for; it may be blocked on a client that stalled.
type sendBody struct {
	r       io.Reader
	mu      sync.Mutex
	err     error
	stopped atomic.Bool
}

var errCallOver = errors.New("the call to the agent is over")

func (s *sendBody) Read(p []byte) (int, error) {
	if s.stopped.Load() {
		return 0, errCallOver
	}
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		s.mu.Lock()
		if s.err == nil {
			s.err = err
		}
		s.mu.Unlock()
	}
	return n, err
}

func (s *sendBody) stop() { s.stopped.Store(true) }

func (s *sendBody) cause(err error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil && s.err != nil {
		return fmt.Errorf("reading the upload: %w", s.err)
	}
	return err
}

// Delete removes p (recursively when asked).
func (c *Client) Delete(p string, recursive bool) error {
	if recursive && path.Clean("/"+p) == "/" {
		return files.ErrRemoveRoot
	}
	q := pathQuery(p)
	setBool(q, "recursive", recursive)
	return c.getJSON(c.ctx, request{method: http.MethodDelete, path: PathFile, q: q}, nil)
}

// Remove removes one file; a file already gone is no error.
func (c *Client) Remove(p string) error {
	q := pathQuery(p)
	q.Set("missingOK", "true")
	return c.getJSON(c.ctx, request{method: http.MethodDelete, path: PathFile, q: q}, nil)
}

// WriteChunk writes one chunk of the chunked upload id of target at offset
// (at most max bytes of body, each also written to observer), into
// files.ChunkTempName(target, id) in the guest.
func (c *Client) WriteChunk(ctx context.Context, target, id string, offset, max int64, createParents bool, body io.Reader, observer io.Writer) (int64, error) {
	q := pathQuery(target)
	q.Set("id", id)
	q.Set("offset", strconv.FormatInt(offset, 10))
	q.Set("max", strconv.FormatInt(max, 10))
	setBool(q, "createParents", createParents)
	if observer != nil {
		body = io.TeeReader(body, observer)
	}
	sb := &sendBody{r: body}
	defer sb.stop()
	var res ChunkResponse
	if err := c.getJSON(ctx, request{method: http.MethodPut, path: PathChunk, q: q, body: sb}, &res); err != nil {
		return 0, sb.cause(err)
	}
	return res.Bytes, nil
}

// CommitChunks checks the collected chunks of upload id against opts and
// renames them over target; it returns the sha256 read back (empty when
// none was asked). The agent removes the chunks when the check fails.
func (c *Client) CommitChunks(ctx context.Context, target, id string, opts files.CommitOptions) (string, error) {
	q := pathQuery(target)
	q.Set("id", id)
	q.Set("size", strconv.FormatInt(opts.Size, 10))
	if opts.SHA256 != "" {
		q.Set("sha256", opts.SHA256)
	}
	setMode(q, opts.Mode)
	setBool(q, "noClobber", opts.NoClobber)
	var res CommitResponse
	if err := c.getJSON(ctx, request{method: http.MethodPost, path: PathCommit, q: q}, &res); err != nil {
		return "", err
	}
	return res.SHA256, nil
}

// SHA256 returns the size and hex sha256 of the file at p, read in the guest.
func (c *Client) SHA256(ctx context.Context, p string) (int64, string, error) {
	var res HashResponse
	err := c.getJSON(ctx, request{method: http.MethodGet, path: PathSHA256, q: pathQuery(p)}, &res)
	return res.Size, res.SHA256, err
}

// StatFS returns the space of the filesystem holding p.
func (c *Client) StatFS(ctx context.Context, p string) (StatFSResponse, error) {
	var res StatFSResponse
	err := c.getJSON(ctx, request{method: http.MethodGet, path: PathStatFS, q: pathQuery(p)}, &res)
	return res, err
}

// Sweep removes old temporary upload files from roots (see files.Sweep).
func (c *Client) Sweep(ctx context.Context, roots []files.SweepRoot, opts files.SweepOptions) ([]string, error) {
	b, err := json.Marshal(SweepRequest{Roots: roots, OlderThan: opts.OlderThan, MaxEntries: opts.MaxEntries})
	if err != nil {
		return nil, err
	}
	var res SweepResponse
	err = c.getJSON(ctx, request{method: http.MethodPost, path: PathSweep, body: bytes.NewReader(b)}, &res)
	return res.Removed, err
}
