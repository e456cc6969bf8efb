package files

import (
	"fmt"

	gossh "golang.org/x/crypto/ssh"
)

// sshKeygenFingerprint is what ssh-keygen -l prints as the fingerprint of an
// authorized_keys line.
func sshKeygenFingerprint(line string) (string, error) {
	k, _, _, _, err := gossh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return "", fmt.Errorf("parsing %q: %w", line, err)
	}
	return gossh.FingerprintSHA256(k), nil
}
