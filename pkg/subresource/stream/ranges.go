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

package stream

import (
	"fmt"
	"strconv"
	"strings"
)

// Range resolves which bytes of a file of size bytes a read asks for: the
// offset and length options when either is set (kubectl --raw cannot send
// headers), else a Range header. partial says the answer is a 206.
//
// net/http parses Range only inside ServeContent, which answers a bad range
// in text/plain rather than a Status, serves several ranges as multipart
// (no client of ours reads it), and copies through 32 KiB reads that undo
// pkg/sftp's concurrent reads; so the one-range parsing is ours.
func Range(offset, length *int64, header string, size int64, what string) (start, n int64, partial bool, err error) {
	if offset != nil || length != nil {
		if offset != nil {
			start = *offset
		}
		if start > size {
			return 0, 0, false, RangeNotSatisfiable(size, fmt.Sprintf("offset %d is past the end of %s (%d bytes)", start, what, size))
		}
		n = size - start
		if length != nil && *length < n {
			n = *length
		}
		// An empty range has no Content-Range to describe it: answer 200 with no bytes.
		return start, n, n > 0, nil
	}
	if header != "" {
		s, l, ok := ParseRange(header, size)
		if !ok {
			return 0, 0, false, RangeNotSatisfiable(size, fmt.Sprintf("range %q does not fit %s (%d bytes)", header, what, size))
		}
		if l >= 0 {
			return s, l, true, nil
		}
		// Multiple ranges: serve the whole file, as RFC 9110 allows.
	}
	return 0, size, false, nil
}

// ParseRange understands one "bytes=" range of a file of size bytes;
// length < 0 means "not a single range" (another unit, or several), which a
// server may answer with the whole file.
func ParseRange(hdr string, size int64) (start, length int64, ok bool) {
	spec, found := strings.CutPrefix(hdr, "bytes=")
	if !found {
		return 0, -1, true
	}
	if strings.Contains(spec, ",") {
		return 0, -1, true
	}
	first, last, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return 0, 0, false
	}
	if first == "" { // suffix: the last N bytes
		n, err := strconv.ParseInt(last, 10, 64)
		if err != nil || n <= 0 {
			return 0, 0, false
		}
		n = min(n, size)
		return size - n, n, true
	}
	s, err := strconv.ParseInt(first, 10, 64)
	if err != nil || s < 0 || s >= size {
		return 0, 0, false
	}
	e := size - 1
	if last != "" {
		if e, err = strconv.ParseInt(last, 10, 64); err != nil || e < s {
			return 0, 0, false
		}
		e = min(e, size-1)
	}
	return s, e - s + 1, true
}
