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

package cdi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"html"
	"io"
	"net/http"
	"strings"
)

// ErrChecksumMismatch: the bytes sent are not the ones the client meant.
var ErrChecksumMismatch = errors.New("checksum mismatch")

// ProxyError is an answer of the upload proxy other than 200.
type ProxyError struct {
	Code    int
	Message string
}

func (e *ProxyError) Error() string {
	return fmt.Sprintf("CDI's upload proxy answered %d %s: %s", e.Code, http.StatusText(e.Code), e.Message)
}

// BodyError is a failure reading what the client sends, not CDI's.
type BodyError struct{ Err error }

func (e *BodyError) Error() string { return e.Err.Error() }
func (e *BodyError) Unwrap() error { return e.Err }

// SendOptions tune Send.
type SendOptions struct {
	// Size of the body, or -1 when unknown (sent chunked).
	Size int64
	// SHA256 the whole body must have (hex), or "".
	SHA256 string
	// Observer sees every byte read from body (progress, metrics). When it
	// also keeps their sha256 (a transfer record does: SHA256() string), that
	// is the body's sum and the body is not hashed a second time.
	Observer io.Writer
}

// Send streams body to the upload proxy. With SHA256 set, the last byte is
// held back until the end of body shows the sum matches: on a mismatch the
// request is cut short, so CDI's upload server never sees a complete volume.
// It returns the bytes read from body and their sha256.
func Send(ctx context.Context, t *Target, body io.Reader, o SendOptions) (int64, string, error) {
	cb := newCheckedBody(body, o.SHA256, o.Observer)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.URL, cb)
	if err != nil {
		return 0, "", err
	}
	req.ContentLength = o.Size
	if o.Size == 0 {
		req.Body = http.NoBody
	}
	req.Header.Set("Authorization", "Bearer "+t.Token)
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := t.Client.Do(req)
	if cb.err != nil {
		// The body's own failure, not the transport's wrapping of it.
		return cb.n, "", cb.err
	}
	if err != nil {
		// The URL holds no secret; the token travels in a header.
		return cb.n, "", fmt.Errorf("reaching CDI's upload proxy: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusOK {
		// The proxy HTML-escapes its messages (uploadproxy.go); users read them plain.
		return cb.n, "", &ProxyError{Code: resp.StatusCode, Message: html.UnescapeString(strings.TrimSpace(string(msg)))}
	}
	if o.Size >= 0 && cb.n != o.Size {
		return cb.n, "", &BodyError{Err: fmt.Errorf("%d of %d bytes", cb.n, o.Size)}
	}
	return cb.n, cb.sum(), nil
}

// checkedBody passes on all but the last byte read so far; at the end it
// lets that byte go only when the sum matches.
type checkedBody struct {
	r    io.Reader
	hash hash.Hash     // nil when obs keeps the sum
	sum  func() string // the hex sha256 of what was read
	want string
	obs  io.Writer

	buf        []byte
	start, end int  // buf[start:end] is read but not passed on
	ended      bool // the source ended and the sum matched
	n          int64
	err        error
}

// newCheckedBody checks r against the hex sha256 want (none when empty),
// passing what it reads to obs too.
func newCheckedBody(r io.Reader, want string, obs io.Writer) *checkedBody {
	cb := &checkedBody{r: r, want: want, obs: obs}
	if s, ok := obs.(interface{ SHA256() string }); ok {
		cb.sum = s.SHA256
	} else {
		h := sha256.New()
		cb.hash, cb.sum = h, func() string { return hex.EncodeToString(h.Sum(nil)) }
	}
	return cb
}

func (b *checkedBody) Read(p []byte) (int, error) {
	if b.buf == nil {
		b.buf = make([]byte, 256<<10)
	}
	for {
		if b.err != nil {
			return 0, b.err
		}
		keep := 1
		if b.ended {
			keep = 0
		}
		if avail := b.end - b.start - keep; avail > 0 && len(p) > 0 {
			k := copy(p[:min(len(p), avail)], b.buf[b.start:b.end])
			b.start += k
			return k, nil
		}
		if b.ended {
			return 0, io.EOF
		}
		if b.start > 0 {
			b.end = copy(b.buf, b.buf[b.start:b.end])
			b.start = 0
		}
		m, err := b.r.Read(b.buf[b.end:])
		if m > 0 {
			if b.hash != nil {
				b.hash.Write(b.buf[b.end : b.end+m])
			}
			if b.obs != nil {
				_, _ = b.obs.Write(b.buf[b.end : b.end+m])
			}
			b.n += int64(m)
			b.end += m
		}
		switch {
		case err == io.EOF:
			if got := b.sum(); b.want != "" && got != b.want {
				b.err = fmt.Errorf("%w: the upload has sha256 %s, expected %s", ErrChecksumMismatch, got, b.want)
			}
			b.ended = true
		case err != nil:
			b.err = &BodyError{Err: fmt.Errorf("the upload stream broke after %d bytes: %w", b.n, err)}
		}
	}
}
