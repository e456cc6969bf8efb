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
	"testing"
)

func TestParseRange(t *testing.T) {
	const size = 100
	tests := []struct {
		hdr           string
		start, length int64
		ok            bool
	}{
		{"bytes=0-9", 0, 10, true},
		{"bytes=90-", 90, 10, true},
		{"bytes=90-500", 90, 10, true},
		{"bytes=-5", 95, 5, true},
		{"bytes=-500", 0, 100, true},
		{"bytes=0-0", 0, 1, true},
		{"bytes=0-1,5-6", 0, -1, true}, // several ranges: the whole file
		{"items=0-1", 0, -1, true},     // another unit: ignored
		{"bytes=100-", 0, 0, false},
		{"bytes=9-1", 0, 0, false},
		{"bytes=-0", 0, 0, false},
		{"bytes=x-1", 0, 0, false},
		{"bytes=5", 0, 0, false},
	}
	for _, tt := range tests {
		start, length, ok := ParseRange(tt.hdr, size)
		if ok != tt.ok || (ok && (start != tt.start || length != tt.length)) {
			t.Errorf("ParseRange(%q) = %d, %d, %v; want %d, %d, %v", tt.hdr, start, length, ok, tt.start, tt.length, tt.ok)
		}
	}
}
