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

package ssh

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	gossh "golang.org/x/crypto/ssh"
)

// TestDialFailureReason: each failure the pool returns falls in one class.
func TestDialFailureReason(t *testing.T) {
	for err, want := range map[error]string{
		&HostKeyMismatchError{Target: "vm"}:                                  "host_key",
		fmt.Errorf("x: %w", &AuthError{Target: "vm", Err: errors.New("no")}): "auth",
		&UnreachableError{Target: "vm", Timeout: true}:                       "timeout",
		&UnreachableError{Target: "vm", Err: errors.New("refused")}:          "unreachable",
		fmt.Errorf("%w vm: private key: bad", ErrInvalidTarget):              "invalid_target",
		fmt.Errorf("connecting: %w", context.Canceled):                       "canceled",
		errors.New("something else"):                                         "other",
	} {
		assert.Equal(t, want, DialFailureReason(err), "%v", err)
	}
}

// TestStatsCountDials: a dial to a closed port counts as a dial and an
// unreachable failure; nothing is left open.
func TestStatsCountDials(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().(*net.TCPAddr)
	require.NoError(t, l.Close()) // nothing listens there now

	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	block, err := gossh.MarshalPrivateKey(priv, "")
	require.NoError(t, err)
	p := NewPool(PoolOptions{DialTimeout: 5 * time.Second})
	defer p.Close()
	_, err = p.Get(context.Background(), Target{Address: "127.0.0.1", Port: addr.Port, User: "u", PrivateKey: pem.EncodeToMemory(block)})
	require.Error(t, err)

	s := p.Stats()
	assert.Equal(t, uint64(1), s.Dials)
	assert.Equal(t, uint64(1), s.DialFailures["unreachable"], "%v", err)
	assert.Len(t, s.DialFailures, len(dialFailureReasons), "every reason, zero or not")
	assert.Zero(t, s.Open)
	assert.Zero(t, s.InUse)
}
