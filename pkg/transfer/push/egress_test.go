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

package push

// Every server here listens on loopback: 127.0.0.1 plays the target, and
// 127.0.0.2 the place a redirect or an upload location points to.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/egress"
)

// countingListener counts the connections it accepts.
type countingListener struct {
	net.Listener
	n atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// elsewhere is a server on 127.0.0.2 that counts connections: where the
// target points, which must never be reached.
func elsewhere(t *testing.T) (*httptest.Server, *countingListener) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("no 127.0.0.2 here: %v", err)
	}
	cl := &countingListener{Listener: l}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusCreated)
	}))
	srv.Listener = cl
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, cl
}

func policy(t *testing.T, allowed ...string) *egress.Policy {
	p, err := egress.New(allowed, nil)
	require.NoError(t, err)
	return p
}

func body(s string) Body { return Body{Reader: strings.NewReader(s), Size: int64(len(s))} }

// TestHTTPRedirectsRefused: an http target's redirect is never followed,
// whether the dialer would allow where it points or not.
func TestHTTPRedirectsRefused(t *testing.T) {
	b, reached := elsewhere(t)
	for _, code := range []int{301, 302, 303, 307, 308} {
		for _, allowed := range []string{"127.0.0.1/32", "127.0.0.0/8"} {
			t.Run(fmt.Sprintf("%d %s", code, allowed), func(t *testing.T) {
				before := reached.n.Load()
				a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					http.Redirect(w, r, b.URL+"/disk.img?X-Amz-Signature=secretsig", code)
				}))
				defer a.Close()
				target := &v1alpha1.ExportTargetSpec{Type: "http", URL: a.URL + "/disk.img"}
				_, err := Push(context.Background(), target, Credentials{Token: "tok"}, body("disk"), policy(t, allowed))
				var re *RedirectError
				require.True(t, errors.As(err, &re), "%v", err)
				assert.True(t, IsPermanent(err))
				assert.Contains(t, err.Error(), "pushes do not follow")
				assert.NotContains(t, err.Error(), "secretsig")
				assert.Equal(t, before, reached.n.Load(), "the redirect's target was reached")
			})
		}
	}
}

// TestRegistryElsewhereRefused: go-containerregistry follows a registry's
// upload location and redirects itself, to other hosts too. It refuses
// private addresses itself (v0.22), and the push's dialer would refuse
// them (TestDialerRefusesWhatTheCheckMissed): the place is not reached.
func TestRegistryElsewhereRefused(t *testing.T) {
	b, reached := elsewhere(t)
	reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v2/":
			w.WriteHeader(http.StatusOK)
		case r.Method == http.MethodHead:
			w.WriteHeader(http.StatusNotFound)
		case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/blobs/uploads/"):
			w.Header().Set("Location", b.URL+"/upload")
			w.WriteHeader(http.StatusAccepted)
		default:
			http.Redirect(w, r, b.URL+r.URL.Path, http.StatusTemporaryRedirect)
		}
	}))
	defer reg.Close()
	ref := strings.TrimPrefix(reg.URL, "http://") + "/vms/vm1:latest"
	_, err := Push(context.Background(), &v1alpha1.ExportTargetSpec{Type: "registry", URL: ref}, Credentials{}, body("disk"), policy(t, "127.0.0.1/32"))
	require.Error(t, err)
	assert.Zero(t, reached.n.Load(), "the upload location was reached")
}

// TestS3RedirectNotFollowed: minio-go does not follow redirects (its
// client answers them as the last response), and its connections go
// through the push's dialer.
func TestS3RedirectNotFollowed(t *testing.T) {
	b, reached := elsewhere(t)
	s3 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, b.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	defer s3.Close()
	target := &v1alpha1.ExportTargetSpec{Type: "s3", S3Config: &v1alpha1.S3Config{Endpoint: s3.URL, Region: "us-east-1", Bucket: "backups", Key: "vm1/disk.img"}}
	_, err := Push(context.Background(), target, Credentials{Username: "a", Password: "b"}, body("disk"), policy(t, "127.0.0.0/8"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "307")
	assert.Zero(t, reached.n.Load(), "the redirect's target was reached")
}

// TestRefusedBeforeConnecting: each kind of target on a denied address is
// refused before any connection, permanently, naming the flag.
func TestRefusedBeforeConnecting(t *testing.T) {
	_, reached := elsewhere(t)
	addr := reached.Addr().String()
	for _, target := range []*v1alpha1.ExportTargetSpec{
		{Type: "http", URL: "http://" + addr + "/disk.img"},
		{Type: "registry", URL: addr + "/vms/vm1:latest"},
		{Type: "s3", S3Config: &v1alpha1.S3Config{Endpoint: "http://" + addr, Region: "us-east-1", Bucket: "backups", Key: "vm1/disk.img"}},
	} {
		_, err := Push(context.Background(), target, Credentials{}, body("disk"), policy(t, "127.0.0.1/32"))
		var refused *egress.RefusedError
		require.True(t, errors.As(err, &refused), "%s: %v", target.Type, err)
		assert.True(t, IsPermanent(err))
		assert.Contains(t, err.Error(), egress.AllowFlag)
	}
	assert.Zero(t, reached.n.Load())
}

// TestDialerRefusesWhatTheCheckMissed: each client's connections go through
// the policy's dialer, which refuses a denied address however the request
// got there (here, past the early check, as after DNS rebinding).
func TestDialerRefusesWhatTheCheckMissed(t *testing.T) {
	_, reached := elsewhere(t)
	addr := reached.Addr().String()
	client, err := httpClient(nil, policy(t, "127.0.0.1/32"))
	require.NoError(t, err)
	var refused *egress.RefusedError

	err = put(context.Background(), client, "http://"+addr+"/disk.img", Credentials{}, body("disk"))
	require.True(t, errors.As(err, &refused), "http: %v", err)
	assert.True(t, IsPermanent(err))

	_, err = pushImage(context.Background(), addr+"/vms/vm1:latest", client.Transport, Credentials{}, body("disk"))
	require.True(t, errors.As(err, &refused), "registry: %v", err)
	assert.True(t, IsPermanent(err))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = putObject(ctx, &v1alpha1.S3Config{Endpoint: "http://" + addr, Region: "us-east-1", Bucket: "backups", Key: "vm1/disk.img"},
		client.Transport, Credentials{Username: "a", Password: "b"}, body("disk"))
	require.Error(t, err, "s3")
	assert.Contains(t, err.Error(), "is refused", "s3")
	assert.Zero(t, reached.n.Load())
}
