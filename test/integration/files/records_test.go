package files

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	v1alpha1 "github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
)

// TestRecordsAreCollected: TestMain runs wukong-apiserver with a 20 s
// retention; a finished record goes soon after, an unfinished one stays.
func TestRecordsAreCollected(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "files-gc")
	g := newGuest(t, ns, "vm1")
	code, _, body := raw(t, cp.Admin, http.MethodPut, g.filesPath(url.Values{"path": {"/gc.txt"}}), strings.NewReader("x"), nil)
	require.Equal(t, http.StatusCreated, code, string(body))
	recs := recordsFor(t, ns, "/gc.txt")
	require.Len(t, recs, 1)
	finished := recs[0].Name

	// A client-opened record that has not finished is not collected.
	records := wukongClient(t, cp.Admin).VmV1alpha1().WukongFileTransfers(ns)
	_, err := records.Create(ctx, recordFor("open", "/open.txt"), metav1.CreateOptions{})
	require.NoError(t, err)

	err = wait.PollUntilContextTimeout(ctx, time.Second, time.Minute, false, func(ctx context.Context) (bool, error) {
		_, err := records.Get(ctx, finished, metav1.GetOptions{})
		return err != nil, nil
	})
	require.NoError(t, err, "the finished record was not collected")
	_, err = records.Get(ctx, "open", metav1.GetOptions{})
	assert.NoError(t, err, "an unfinished record must stay")
}

// TestStaleTransferringRecordIsFailed: a record left Transferring by a server
// that stopped (here: written so by hand) is ended Failed, not left forever.
func TestStaleTransferringRecordIsFailed(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "files-stale")
	records := wukongClient(t, cp.Admin).VmV1alpha1().WukongFileTransfers(ns)
	rec, err := records.Create(ctx, recordFor("orphan", "/orphan.bin"), metav1.CreateOptions{})
	require.NoError(t, err)
	old := metav1.NewTime(time.Now().Add(-time.Minute))
	rec.Status.Phase, rec.Status.BytesTransferred, rec.Status.UpdatedAt = "Transferring", 4096, &old
	_, err = records.UpdateStatus(ctx, rec, metav1.UpdateOptions{})
	require.NoError(t, err)

	var got *v1alpha1.WukongFileTransfer
	err = wait.PollUntilContextTimeout(ctx, time.Second, time.Minute, false, func(ctx context.Context) (bool, error) {
		got, err = records.Get(ctx, "orphan", metav1.GetOptions{})
		return err == nil && got.Status.Phase == "Failed", nil
	})
	require.NoError(t, err, "the stale record was not ended")
	assert.Contains(t, got.Status.Message, "stopped reporting progress after 4096 bytes")
	assert.NotNil(t, got.Status.CompletedAt)
}

// TestNoSecretsInRecordsOrLogs: the private key from the Secret appears in no
// record, Wukong status or server log line.
func TestNoSecretsInRecordsOrLogs(t *testing.T) {
	ns := namespace(t, "files-secrets")
	g := newGuest(t, ns, "vm1")
	code, _, body := raw(t, cp.Admin, http.MethodPut, g.filesPath(url.Values{"path": {"/s.txt"}}), strings.NewReader("x"), nil)
	require.Equal(t, http.StatusCreated, code, string(body))
	g.vm.Kill() // and a failure, whose message must not carry it either
	raw(t, cp.Admin, http.MethodGet, g.filesPath(url.Values{"path": {"/s.txt"}}), nil, nil)

	keyBody := secretBody(string(g.key))
	require.NotEmpty(t, keyBody)
	for _, args := range [][]string{
		{"get", "wukongfiletransfers", "-n", ns, "-o", "yaml"},
		{"get", "wukongs", "-n", ns, "-o", "yaml"},
		{"get", "events", "-n", ns, "-o", "yaml"},
	} {
		out, _, err := cp.Kubectl(cp.Admin, args...)
		require.NoError(t, err)
		assert.NotContains(t, out, keyBody, "%v", args)
		assert.NotContains(t, out, "PRIVATE KEY", "%v", args)
	}
	logs, err := os.ReadFile(cp.LogPath("wukong-apiserver"))
	require.NoError(t, err)
	assert.NotContains(t, string(logs), keyBody)
	assert.NotContains(t, string(logs), "PRIVATE KEY")
}

// secretBody is the base64 body of a PEM key, the part that would leak.
func secretBody(pem string) string {
	var b strings.Builder
	for _, l := range strings.Split(pem, "\n") {
		if l != "" && !strings.HasPrefix(l, "-----") {
			b.WriteString(l)
		}
	}
	// The start is a header every OpenSSH key shares; 32 characters from the
	// middle are this key's own.
	s := b.String()
	return s[len(s)/2 : len(s)/2+32]
}

func recordFor(name, remote string) *v1alpha1.WukongFileTransfer {
	return &v1alpha1.WukongFileTransfer{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       v1alpha1.WukongFileTransferSpec{WukongName: "vm1", Operation: "upload", RemotePath: remote},
	}
}
