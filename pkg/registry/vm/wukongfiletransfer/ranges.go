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

package wukongfiletransfer

import (
	"sort"

	"github.com/novasphere/wukong/pkg/apis/vm"
)

// MergeRange adds r to ranges, keeping them sorted and merging overlapping or
// touching ones, so that a record lists as few ranges as the holes require.
func MergeRange(ranges []vm.ByteRange, r vm.ByteRange) []vm.ByteRange {
	if r.Length <= 0 {
		return ranges
	}
	all := append(append([]vm.ByteRange(nil), ranges...), r)
	sort.Slice(all, func(i, j int) bool { return all[i].Offset < all[j].Offset })
	out := all[:1]
	for _, x := range all[1:] {
		last := &out[len(out)-1]
		if x.Offset <= last.Offset+last.Length {
			last.Length = max(last.Offset+last.Length, x.Offset+x.Length) - last.Offset
			continue
		}
		out = append(out, x)
	}
	return out
}

// Covered reports whether ranges cover [0, total).
func Covered(ranges []vm.ByteRange, total int64) bool {
	if total == 0 {
		return true
	}
	return len(ranges) == 1 && ranges[0].Offset == 0 && ranges[0].Length >= total
}

// Sum is the number of bytes in ranges.
func Sum(ranges []vm.ByteRange) int64 {
	var n int64
	for _, r := range ranges {
		n += r.Length
	}
	return n
}
