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

// Package replicas tests wukong-apiserver as a Deployment of two replicas:
// two processes of the shipped binary on one etcd, both behind the one
// APIService, kube-apiserver picking one of them per request
// (--enable-aggregator-routing). Chunked transfers land on both, one
// replica holds the Lease, and a replica SIGKILLed mid-transfer costs
// `kubectl wukong cp` a retry, not the transfer.
package replicas

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
	"k8s.io/client-go/kubernetes"

	"github.com/novasphere/wukong/pkg/generated/clientset/versioned"
	"github.com/novasphere/wukong/test/integration/framework"
	"github.com/novasphere/wukong/test/integration/sshvm"
	"github.com/novasphere/wukong/test/integration/standin"
)

var cp *framework.ControlPlane

func TestMain(m *testing.M) {
	os.Exit(framework.RunTestMain(m, framework.Options{
		Replicas:              2,
		BeforeWukongAPIServer: standin.InstallKubeVirtCRDs,
		// --transfer-stale-after stays 1m, as deployed: a download that
		// waits for a range's sha256 a killed replica never recorded
		// (transfers.DigestWait) must not find its record ended meanwhile.
	}, &cp))
}

// nextAddr hands every guest its own loopback address, apart from other
// packages' guests.
var nextAddr atomic.Int32

// guest is one Wukong backed by a running sshd.
type guest struct {
	ns, name string
	vm       *sshvm.VM
}

// host is where a path inside the guest lives on this machine.
func (g *guest) host(p string) string { return filepath.Join(g.vm.Root, p) }

// newGuest starts an sshd "VM", its key Secret, its Wukong and its running VMI.
func newGuest(t testing.TB, ns, name string) *guest {
	addr := fmt.Sprintf("127.0.60.%d", 10+nextAddr.Add(1))
	return &guest{ns: ns, name: name, vm: standin.StartSSHGuest(t, cp, ns, name, addr).VM}
}

func wukongs(t testing.TB) versioned.Interface {
	t.Helper()
	c, err := versioned.NewForConfig(cp.Admin.Config)
	require.NoError(t, err)
	return c
}

func kube(t testing.TB) kubernetes.Interface {
	t.Helper()
	c, err := kubernetes.NewForConfig(cp.Admin.Config)
	require.NoError(t, err)
	return c
}

// tempFiles lists what uploads may leave in dir: names with ".wukong-".
func tempFiles(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var left []string
	for _, e := range entries {
		if strings.Contains(e.Name(), ".wukong-") {
			left = append(left, e.Name())
		}
	}
	return left
}

func readFile(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return string(b)
}
