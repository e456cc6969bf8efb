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

// Package push sends a disk's bytes to a disk's exportTarget: an OCI registry
// (as a KubeVirt containerDisk image), S3-compatible storage (a multipart
// upload), or an HTTP endpoint (one PUT). It streams the body it is given in
// bounded memory and writes nothing to disk. Reaching the disk is the
// caller's, and so is recording the progress.
package push

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/minio/minio-go/v7"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/egress"
	"github.com/novasphere/wukong/pkg/transfer/qcow2"
)

// Credentials are what a target takes, read from the Secrets the target
// names. They are used only for the request and never logged or recorded.
type Credentials struct {
	// Username and Password: HTTP basic auth, a registry login, or an S3
	// access key ID and secret key.
	Username, Password string
	// Token is a bearer token for an http target.
	Token string
	// Keychain resolves registry logins from a dockerconfigjson Secret.
	Keychain authn.Keychain
	// CA is a PEM bundle to trust besides the system's roots.
	CA []byte
}

// Result says what the target holds after a push.
type Result struct {
	// Digest: an image's manifest digest for a registry, otherwise empty
	// (the caller knows the sha256 of the bytes it sent).
	Digest string
}

// Body is a disk's bytes, with their size, which every target needs up front:
// a tar header, an S3 part plan, a Content-Length.
type Body struct {
	io.Reader
	Size int64
}

// Push sends body to target, connecting only where policy allows (nil: the
// built-in denied ranges, egress.BuiltinDenied). Every connection, the
// first and any a registry's redirect or token server asks for, goes
// through policy's dialer; an http target's redirects are refused.
func Push(ctx context.Context, target *v1alpha1.ExportTargetSpec, creds Credentials, body Body, policy *egress.Policy) (Result, error) {
	// Refuse early, before a byte is read, what the dialer would refuse.
	if err := CheckHost(ctx, target, policy); err != nil {
		return Result{}, err
	}
	client, err := httpClient(creds.CA, policy)
	if err != nil {
		return Result{}, err
	}
	defer client.CloseIdleConnections() // a client per push; nothing reuses them
	switch target.Type {
	case v1alpha1.ExportTargetRegistry:
		return pushImage(ctx, target.URL, client.Transport, creds, body)
	case v1alpha1.ExportTargetS3, v1alpha1.ExportTargetHTTP:
		switch f := Format(target); f {
		case v1alpha1.ExportFormatQCOW2:
			body = Body{Reader: qcow2.NewReader(body, body.Size), Size: qcow2.Size(body.Size)}
		case v1alpha1.ExportFormatRaw:
		default:
			return Result{}, Permanent(fmt.Errorf("%s targets take format raw or qcow2, not %s", target.Type, f))
		}
		if target.Type == v1alpha1.ExportTargetS3 {
			return Result{}, putObject(ctx, target.S3Config, client.Transport, creds, body)
		}
		return Result{}, put(ctx, client, target.URL, creds, body)
	}
	return Result{}, Permanent(fmt.Errorf("unknown export target type %q", target.Type))
}

// Format is the target's format with its default: oci for a registry, raw
// otherwise.
func Format(t *v1alpha1.ExportTargetSpec) string {
	switch {
	case t.Format != "":
		return t.Format
	case t.Type == v1alpha1.ExportTargetRegistry:
		return v1alpha1.ExportFormatOCI
	}
	return v1alpha1.ExportFormatRaw
}

// Describe names where target sends a disk, its URL redacted (vm.RedactURL):
// "registry oci registry.example.com/vms/ubuntu:tag",
// "s3 raw https://s3.example.com/bucket/key", "http raw https://host/path".
// A change of it is a new push.
func Describe(t *v1alpha1.ExportTargetSpec) string {
	where := t.URL
	switch t.Type {
	case v1alpha1.ExportTargetS3:
		if t.S3Config != nil {
			where = vm.RedactURL(t.S3Config.Endpoint) + "/" + t.S3Config.Bucket + "/" + t.S3Config.Key
		}
	case v1alpha1.ExportTargetHTTP:
		where = vm.RedactURL(t.URL)
	}
	return t.Type + " " + Format(t) + " " + where
}

// PermanentError is a failure that trying again will not cure: a refused
// login, a missing bucket, a malformed target. Others (a cut connection, a
// 5xx) may pass.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent marks err as one a retry will not cure.
func Permanent(err error) error { return &PermanentError{Err: err} }

// IsPermanent says whether err is a failure a retry will not cure: marked
// so, an address the egress policy refuses, or a 4xx answer from the target other than 408 and 429.
func IsPermanent(err error) bool {
	var p *PermanentError
	var refused *egress.RefusedError
	if errors.As(err, &p) || errors.As(err, &refused) {
		return true
	}
	code := 0
	var te *transport.Error
	var me minio.ErrorResponse
	var he *StatusError
	switch {
	case errors.As(err, &te):
		code = te.StatusCode
	case errors.As(err, &me):
		code = me.StatusCode
	case errors.As(err, &he):
		code = he.Code
	}
	return code >= 400 && code < 500 && code != http.StatusRequestTimeout && code != http.StatusTooManyRequests
}

// StatusError is an http target's answer other than success.
type StatusError struct {
	Code   int
	Status string
	URL    string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("PUT %s answered %s", e.URL, e.Status)
}

// CheckHost resolves the host target names and fails with a permanent
// *egress.RefusedError if the policy allows none of its addresses. A
// failure to resolve may pass, and is returned as it is.
func CheckHost(ctx context.Context, target *v1alpha1.ExportTargetSpec, policy *egress.Policy) error {
	var host string
	switch target.Type {
	case v1alpha1.ExportTargetRegistry:
		ref, err := name.ParseReference(target.URL)
		if err != nil {
			return Permanent(fmt.Errorf("the registry target %q: %w", target.URL, err))
		}
		host = ref.Context().RegistryStr()
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
	case v1alpha1.ExportTargetS3:
		if target.S3Config == nil {
			return Permanent(fmt.Errorf("an s3 target needs s3Config"))
		}
		host = hostOf(target.S3Config.Endpoint)
	default:
		host = hostOf(target.URL)
	}
	if host == "" {
		return Permanent(fmt.Errorf("the target %s names no host", Describe(target)))
	}
	_, err := policy.Resolve(ctx, host)
	var refused *egress.RefusedError
	if errors.As(err, &refused) {
		return Permanent(err)
	}
	return err
}

// hostOf is rawURL's host, without port or brackets; "" if it has none.
func hostOf(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return ""
	}
	return u.Hostname()
}

// RedirectError is an http target's answer that points elsewhere. A push
// does not follow it: the place it points to was never checked by the
// Wukong's validation, and a redirect is the usual way to steer a server
// to an address it would refuse.
type RedirectError struct {
	Code     int
	Location string // redacted
}

func (e *RedirectError) Error() string {
	return fmt.Sprintf("the target answered %d with a redirect to %q, which pushes do not follow; name the final URL in the exportTarget", e.Code, e.Location)
}

// httpClient trusts the system's roots and, if given, the PEM bundle ca,
// and connects only where policy allows. It ignores HTTP(S)_PROXY: the
// policy can check only a direct connection's address.
func httpClient(ca []byte, policy *egress.Policy) (*http.Client, error) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	t.ResponseHeaderTimeout = 5 * time.Minute // a target may verify a large body before it answers
	t.DialContext = policy.DialContext(&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second})
	if len(ca) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(ca) {
			return nil, Permanent(fmt.Errorf("the target's CA bundle holds no PEM certificate"))
		}
		t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: t, CheckRedirect: func(req *http.Request, _ []*http.Request) error {
		code := 0
		if req.Response != nil {
			code = req.Response.StatusCode
		}
		return Permanent(&RedirectError{Code: code, Location: vm.RedactURL(req.URL.String())})
	}}, nil
}
