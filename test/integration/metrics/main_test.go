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

// Package metrics tests what an operator sees of wukong-apiserver: its
// /metrics, read as a user bound to the shipped metrics ClusterRole, after
// known transfers, uploads, downloads, failures and refusals, through
// kube-apiserver to real sshd guests; and the shipped monitoring component
// (artifacts/monitoring): its dashboard and alerts name only metrics the
// server exposes, and it builds with kubectl's kustomize. It starts its own
// control plane, so that no other test's transfers move the counters.
package metrics

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"k8s.io/client-go/rest"

	"github.com/novasphere/wukong/test/integration/framework"
	"github.com/novasphere/wukong/test/integration/sshvm"
	"github.com/novasphere/wukong/test/integration/standin"
)

var cp *framework.ControlPlane

// The server's limits, small enough for a test to reach.
const idleTimeout = "3s"

func TestMain(m *testing.M) {
	os.Exit(framework.RunTestMain(m, framework.Options{
		BeforeWukongAPIServer: standin.InstallKubeVirtCRDs,
		WukongAPIServerArgs:   []string{"--max-streams-per-user=1", "--stream-idle-timeout=" + idleTimeout},
		// A plain upload whose client stalls is cut by wukong-apiserver
		// after the idle timeout, but the client hears of it only when
		// kube-apiserver's proxy gives up (504): sooner than its default 60 s.
		KubeAPIServerArgs: []string{"--request-timeout=15s"},
	}, &cp))
}

// guest is one Wukong backed by a running sshd, its root on this machine.
type guest struct {
	ns, name string
	vm       *sshvm.VM
}

// newGuest starts an sshd "VM" on addr, its key Secret, its Wukong and its
// running VMI.
func newGuest(t *testing.T, ns, name, addr string) *guest {
	return &guest{ns: ns, name: name, vm: standin.StartSSHGuest(t, cp, ns, name, addr).VM}
}

// files is the API path of the guest's files subresource for path p.
func (g *guest) files(p string, extra ...string) string {
	q := "path=" + p
	for _, e := range extra {
		q += "&" + e
	}
	return fmt.Sprintf("/apis/vm.novasphere.dev/v1alpha1/namespaces/%s/wukongs/%s/files?%s", g.ns, g.name, q)
}

// send sends one request through kube-apiserver as u.
func send(u *framework.User, method, path string, body io.Reader, size int64) (int, []byte, error) {
	hc, err := rest.HTTPClientFor(u.Config)
	if err != nil {
		return 0, nil, err
	}
	req, err := http.NewRequest(method, u.Config.Host+path, body)
	if err != nil {
		return 0, nil, err
	}
	req.ContentLength = size
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// scrape reads wukong-apiserver's /metrics directly (as Prometheus does,
// not through kube-apiserver) as u; it returns the code and the samples.
func scrape(t *testing.T, c *framework.ControlPlane, u *framework.User) (int, samples) {
	t.Helper()
	hc, err := rest.HTTPClientFor(&rest.Config{TLSClientConfig: rest.TLSClientConfig{
		CAData: c.WukongCAPEM, CertData: u.Config.CertData, KeyData: u.Config.KeyData,
	}})
	require.NoError(t, err)
	resp, err := hc.Get(c.WukongAPIServerURL() + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, nil
	}
	return resp.StatusCode, parse(t, string(b))
}

// sample is one line of the text exposition format.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

type samples []sample

var (
	sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)`)
	labelPair  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)
)

func parse(t *testing.T, text string) samples {
	var out samples
	for _, line := range strings.Split(text, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		m := sampleLine.FindStringSubmatch(line)
		require.NotNil(t, m, "a line of /metrics that is no sample: %q", line)
		v, err := strconv.ParseFloat(m[3], 64)
		require.NoError(t, err, line)
		s := sample{name: m[1], labels: map[string]string{}, value: v}
		for _, l := range labelPair.FindAllStringSubmatch(m[2], -1) {
			s.labels[l[1]] = l[2]
		}
		out = append(out, s)
	}
	return out
}

// sum adds the values of the samples of name whose labels include labels
// (name, value pairs).
func (ss samples) sum(name string, labels ...string) float64 {
	var v float64
	for _, s := range ss {
		if s.name != name {
			continue
		}
		ok := true
		for i := 0; i+1 < len(labels); i += 2 {
			if s.labels[labels[i]] != labels[i+1] {
				ok = false
			}
		}
		if ok {
			v += s.value
		}
	}
	return v
}

// names are the metric names of the samples (a histogram's _bucket, _sum
// and _count each).
func (ss samples) names() map[string]bool {
	out := map[string]bool{}
	for _, s := range ss {
		out[s.name] = true
	}
	return out
}
