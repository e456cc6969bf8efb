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
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRangeOverflowRefused: an offset and length whose end does not fit an
// int64 are refused with the field named (400) before the guest is dialled,
// as are negative ones; no record is made.
func TestRangeOverflowRefused(t *testing.T) {
	ns := namespace(t, "files-overflow")
	g := newGuest(t, ns, "vm1")
	require.NoError(t, os.WriteFile(g.host("/f"), []byte("0123456789"), 0o644))
	for _, tc := range []struct {
		name, offset, length, field string
	}{
		{"end past MaxInt64", "1", fmt.Sprint(int64(math.MaxInt64)), "length"},
		{"offset at MaxInt64", fmt.Sprint(int64(math.MaxInt64)), "1", "length"},
		{"both huge", fmt.Sprint(int64(math.MaxInt64 / 2)), fmt.Sprint(int64(math.MaxInt64/2 + 2)), "length"},
		{"negative offset", "-1", "10", "offset"},
		{"negative length", "0", "-5", "length"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := url.Values{"path": {"/f"}, "offset": {tc.offset}, "length": {tc.length}}
			code, _, body := raw(t, cp.Admin, http.MethodGet, g.filesPath(q), nil, nil)
			assert.Equal(t, http.StatusBadRequest, code, string(body))
			assert.Contains(t, status(t, body).Message, tc.field+": Invalid value")
		})
	}
	assert.Empty(t, recordsFor(t, ns, "/f"), "nothing was read")
}
