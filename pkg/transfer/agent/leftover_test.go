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
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/novasphere/wukong/pkg/transfer/files"
)

// stallingBody hands the agent its first n bytes, then notes the temporary
// files in dir and blocks until released: an agent that stopped answering.
type stallingBody struct {
	r        io.Reader
	n        int
	dir      string
	seen     chan []string
	release  chan struct{}
	once     sync.Once
	received int
}

func (b *stallingBody) Read(p []byte) (int, error) {
	if b.received >= b.n {
		b.once.Do(func() {
			entries, _ := os.ReadDir(b.dir)
			var names []string
			for _, e := range entries {
				if strings.HasPrefix(e.Name(), files.TempPrefix) {
					names = append(names, e.Name())
				}
			}
			b.seen <- names
		})
		<-b.release
		return 0, errors.New("released")
	}
	n, err := b.r.Read(p)
	b.received += n
	return n, err
}

// TestUploadNamesItsLeftover: when the agent does not answer an upload
// (it died, the connection broke), the client's error is a
// *files.LeftoverError naming the temporary file the agent was writing, so
// that wukong-apiserver removes it on its next connection.
func TestUploadNamesItsLeftover(t *testing.T) {
	f := newFixture(t, Limits{})
	seen, release := make(chan []string, 1), make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = io.NopCloser(&stallingBody{r: r.Body, n: 1 << 16, dir: f.data, seen: seen, release: release})
		f.h.ServeHTTP(w, r)
	}))
	srv.TLS = f.srv.TLS
	srv.StartTLS()
	defer srv.Close()
	c, err := NewClient(ClientConfig{Address: srv.Listener.Addr().String(), CAPEM: f.caPEM, ServerName: agentName, Token: testToken})
	must(t, err)
	defer c.Close()

	go func() {
		names := <-seen
		seen <- names
		srv.CloseClientConnections()
	}()
	_, err = c.Upload(context.Background(), "/data/big.bin", bytes.NewReader(make([]byte, 1<<20)), files.UploadOptions{Size: 1 << 20})
	close(release) // before srv.Close, which waits for the handler
	var left *files.LeftoverError
	if !errors.As(err, &left) {
		t.Fatalf("err %v (%T), want a *files.LeftoverError", err, err)
	}
	names := <-seen
	if len(names) != 1 || left.Path != "/data/"+names[0] {
		t.Fatalf("leftover %q, the agent was writing %v", left.Path, names)
	}

	// An answer of the agent is no leftover: it cleaned up itself.
	_, err = f.c.Upload(context.Background(), "/data/no/parent", strings.NewReader("x"), files.UploadOptions{Size: 1})
	if !errors.Is(err, files.ErrNoParent) || errors.As(err, &left) {
		t.Fatalf("err %v, want ErrNoParent and no leftover", err)
	}
	// A tmp the client did not make is refused.
	req, _ := http.NewRequest(http.MethodPut, f.srv.URL+"/v1/file?path=/data/x&tmp=../../e", strings.NewReader("x"))
	req.Header.Set("Authorization", "Bearer "+testToken)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := hc.Do(req)
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("tmp=../../e: %d, want 400", resp.StatusCode)
	}
}
