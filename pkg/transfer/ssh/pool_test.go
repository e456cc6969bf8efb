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
