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

package files

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	gossh "golang.org/x/crypto/ssh"
)

// A chunked upload's commit checks the whole file's sha256. Reading the
// file back over SFTP costs wukong-apiserver more than the upload itself
// (SSH decryption, copies and the hash: about 2.5 CPU-s per GiB here), so
// the guest is asked first: `sha256sum` over an SSH exec session hashes the
// file where it lies. The guest is the user's own VM and the file its own,
// so its answer is as good as the bytes it would send back. A guest that
// cannot answer (no shell, no coreutils, a chroot with internal-sftp, a
// login script that prints) is read back as before.

// GuestHasher hashes a file in the guest: the hex sha256 of the file at p.
type GuestHasher func(ctx context.Context, p string) (string, error)

// WithGuestHasher makes fs ask hash for the sha256 of a collected chunked
// upload before reading it back.
func (fs *FS) WithGuestHasher(hash GuestHasher) *FS {
	fs.guestHash = hash
	return fs
}

// errGuestHash: the guest's answer was not one sha256sum line.
var errGuestHash = errors.New("the guest's sha256sum answered something else")

// guestHashOutputMax bounds what is read of the command's output.
const guestHashOutputMax = 4 << 10

// SSHGuestHasher runs sha256sum in the guest over conn.
func SSHGuestHasher(conn *gossh.Client) GuestHasher {
	return func(ctx context.Context, p string) (string, error) {
		s, err := conn.NewSession()
		if err != nil {
			return "", err
		}
		defer s.Close()
		out, err := s.StdoutPipe()
		if err != nil {
			return "", err
		}
		if err := s.Start("sha256sum -b -- " + ShellQuote(p)); err != nil {
			return "", err
		}
		stop := context.AfterFunc(ctx, func() { _ = s.Close() })
		defer stop()
		b, rerr := io.ReadAll(io.LimitReader(out, guestHashOutputMax))
		if err := s.Wait(); err != nil {
			return "", errors.Join(err, ctx.Err())
		}
		if rerr != nil {
			return "", rerr
		}
		return parseSHA256Sum(b)
	}
}

// parseSHA256Sum takes the sum from sha256sum's one line of output
// ("HEX *NAME"; a leading backslash when NAME had to be escaped).
func parseSHA256Sum(b []byte) (string, error) {
	line, rest, _ := bytes.Cut(b, []byte("\n"))
	line = bytes.TrimPrefix(line, []byte(`\`))
	if len(bytes.TrimSpace(rest)) != 0 || len(line) < 64+2 || line[64] != ' ' {
		return "", errGuestHash
	}
	sum := strings.ToLower(string(line[:64]))
	if _, err := hex.DecodeString(sum); err != nil {
		return "", fmt.Errorf("%w: %v", errGuestHash, err)
	}
	return sum, nil
}

// ShellQuote quotes s as one word for a POSIX shell.
func ShellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
