package files

import (
	"io"
	"testing"

	"github.com/pkg/sftp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// memSFTP is a client of pkg/sftp's in-memory server: nothing a test does
// touches this machine's files.
func memSFTP(t testing.TB) *sftp.Client {
	t.Helper()
	clientR, serverW := io.Pipe()
	serverR, clientW := io.Pipe()
	server := sftp.NewRequestServer(struct {
		io.Reader
		io.WriteCloser
	}{serverR, serverW}, sftp.InMemHandler())
	go func() { _ = server.Serve() }()
	c, err := sftp.NewClientPipe(clientR, clientW)
	require.NoError(t, err)
	t.Cleanup(func() {
		// The server side goes first, so that the client sees the end.
		server.Close()
		serverW.Close()
		serverR.Close()
		c.Close()
	})
	return c
}

// TestDeleteRefusesRoot: this layer refuses a recursive delete of / itself,
// whatever the API in front of it checked.
func TestDeleteRefusesRoot(t *testing.T) {
	c := memSFTP(t)
	require.NoError(t, c.Mkdir("/keep"))
	for _, p := range []string{"/", "//", "/.", "/keep/..", "", "."} {
		assert.ErrorIs(t, Delete(c, p, true), ErrRemoveRoot, "%q", p)
		_, err := c.Stat("/keep")
		require.NoError(t, err, "%q removed the guest's files", p)
	}
	require.NoError(t, Delete(c, "/keep", true))
}
