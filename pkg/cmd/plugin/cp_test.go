package plugin_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

)

const files = "namespaces/ns1/wukongs/vm1/files"

func TestCpDownloadSmallFile(t *testing.T) {
	f := newFakeAPI(t)
	root := f.addVM(fakeNS, "vm1")
	want := payload(3000)
	require.NoError(t, os.MkdirAll(filepath.Join(root, "data"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "data/f.bin"), want, 0o644))
	dst := filepath.Join(t.TempDir(), "out.bin")

	_, _, err := f.run(nil, "cp", "vm1:/data/f.bin", dst)
	require.NoError(t, err)
	got, err := os.ReadFile(dst)
	require.NoError(t, err)
	assert.Equal(t, want, got)
	calls := f.calls()
	require.Len(t, calls, 3, "%q", calls)
	assert.Equal(t, "GET "+files+"?path=/data", calls[0], "stat from the parent's listing")
	assert.Equal(t, "GET "+files+"?path=/data/f.bin", calls[1], "one whole GET for a file within one chunk")
	assert.True(t, strings.HasPrefix(calls[2], "GET namespaces/ns1/wukongfiletransfers/vm1-download-"), "the record is read for its sha256: %s", calls[2])
	assert.NoFileExists(t, dst+".wukong-part")
}
