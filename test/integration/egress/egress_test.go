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

package egress

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/yaml"

	v1alpha1 "github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/generated/clientset/versioned"
	"github.com/novasphere/wukong/test/integration/framework"
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

// target is an http target on 127.0.0.1 that takes any PUT and counts
// the connections it gets.
func target(t *testing.T) (*httptest.Server, *countingListener) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	cl := &countingListener{Listener: l}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusCreated)
	}))
	srv.Listener = cl
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, cl
}

func wukongWithTarget(name string, et *v1alpha1.ExportTargetSpec) *v1alpha1.Wukong {
	return &v1alpha1.Wukong{
		TypeMeta:   metav1.TypeMeta{APIVersion: "vm.novasphere.dev/v1alpha1", Kind: "Wukong"},
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.WukongSpec{CPU: 1, Disks: []v1alpha1.DiskConfig{{
			Name: "system", Image: "docker://quay.io/containerdisks/fedora:40", ExportTarget: et,
		}}},
	}
}

// TestPushToLoopbackRefused: a Wukong whose http target is localhost is
// accepted (a name is resolved only when the push dials), and its push,
// due once the import succeeded, is refused: the disk's pushStatus and
// kubectl get disks say Failed, name the address and the flag that
// allows it, and the target never sees a connection.
func TestPushToLoopbackRefused(t *testing.T) {
	srv, conns := target(t)
	_, port, err := net.SplitHostPort(srv.Listener.Addr().String())
	require.NoError(t, err)
	ns := framework.CreateTestNamespace(t, cp, "egress")
	w := wukongWithTarget("vm1", &v1alpha1.ExportTargetSpec{Type: "http", URL: "http://localhost:" + port + "/uploads/vm1.img"})
	b, err := yaml.Marshal(w)
	require.NoError(t, err)
	if _, stderr, err := cp.KubectlWithStdin(cp.Admin, strings.NewReader(string(b)), "create", "-n", ns, "-f", "-"); err != nil {
		t.Fatalf("%v: %s", err, stderr)
	}

	c, err := versioned.NewForConfig(cp.Admin.Config)
	require.NoError(t, err)
	var ps *v1alpha1.PushStatus
	err = wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		got, err := c.VmV1alpha1().Wukongs(ns).Get(ctx, "vm1", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, v := range got.Status.Volumes {
			if v.PushStatus != nil && v.PushStatus.Phase == v1alpha1.TransferPhaseFailed {
				ps = v.PushStatus
				return true, nil
			}
		}
		return false, nil
	})
	require.NoError(t, err, "the push never failed")
	assert.Contains(t, ps.Message, "is refused")
	assert.Contains(t, ps.Message, `(from "localhost")`)
	assert.Contains(t, ps.Message, "loopback")
	assert.Contains(t, ps.Message, "--push-allowed-cidrs")
	assert.NotContains(t, ps.Message, "will try again")
	assert.Empty(t, ps.Transfer, "nothing was transferred, so nothing was recorded")

	wide := framework.RunKubectl(t, cp, cp.Admin, "get", "disks", "-n", ns, "-o", "wide")
	assert.Contains(t, wide, "Failed http raw http://localhost:"+port+"/uploads/vm1.img")
	assert.Zero(t, conns.n.Load(), "the target was reached")
}

// TestLiteralDeniedAddressRefusedAtCreate: kubectl create --dry-run=server
// of a Wukong whose exportTarget names a link-local address (the cloud
// metadata service, in several spellings) is refused with 422, naming the
// field and the flag; nothing is stored, nothing is dialed.
func TestLiteralDeniedAddressRefusedAtCreate(t *testing.T) {
	ns := framework.CreateTestNamespace(t, cp, "egress-literal")
	c, err := versioned.NewForConfig(cp.Admin.Config)
	require.NoError(t, err)
	for i, et := range []*v1alpha1.ExportTargetSpec{
		{Type: "http", URL: "http://169.254.169.254/latest/meta-data/"},
		{Type: "http", URL: "http://2852039166/latest/meta-data/"},
		{Type: "http", URL: "http://[::ffff:a9fe:a9fe]/"},
		{Type: "http", URL: "http://[fe80::1]:8080/x"},
		{Type: "http", URL: "http://127.0.0.1:8080/x"},
		{Type: "registry", URL: "169.254.169.254:5000/vms/vm1:latest"},
		{Type: "s3", S3Config: &v1alpha1.S3Config{Endpoint: "http://169.254.169.254", Bucket: "backups", Key: "vm1.img"}},
	} {
		name := "literal-" + string(rune('a'+i))
		w := wukongWithTarget(name, et)
		b, err := yaml.Marshal(w)
		require.NoError(t, err)
		_, stderr, err := cp.KubectlWithStdin(cp.Admin, strings.NewReader(string(b)), "create", "--dry-run=server", "-n", ns, "-f", "-")
		require.Error(t, err, "%s accepted", et.URL+"/"+name)
		assert.Contains(t, stderr, "is invalid", "%+v", et)
		assert.Contains(t, stderr, "spec.disks[0].exportTarget.", "%+v", et)
		assert.Contains(t, stderr, "is refused", "%+v", et)
		assert.Contains(t, stderr, "--push-allowed-cidrs", "%+v", et)

		_, err = c.VmV1alpha1().Wukongs(ns).Create(context.Background(), w, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		var status apierrors.APIStatus
		require.ErrorAs(t, err, &status, "%+v", et)
		assert.EqualValues(t, http.StatusUnprocessableEntity, status.Status().Code, "%+v", et)
	}
	list, err := c.VmV1alpha1().Wukongs(ns).List(context.Background(), metav1.ListOptions{})
	require.NoError(t, err)
	assert.Empty(t, list.Items)
}
