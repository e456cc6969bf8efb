package ssh

import (
	"testing"

	"github.com/stretchr/testify/assert"
	gossh "golang.org/x/crypto/ssh"
)

// The pool's tests against real sshd guests are in test/integration/sshpool;
// this one reads an unexported list.

func TestPreferredCiphers(t *testing.T) {
	c := preferredCiphers()
	assert.Equal(t, gossh.CipherAES128GCM, c[0])
	assert.Contains(t, c, gossh.CipherChaCha20Poly1305, "defaults follow")
}
