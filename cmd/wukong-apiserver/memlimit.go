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

package main

import (
	"fmt"
	"strconv"
)

// containerMemoryLimitEnv is set by the Deployment from the container's
// memory limit (the downward API's limits.memory, in bytes).
const containerMemoryLimitEnv = "WUKONG_CONTAINER_MEMORY_LIMIT"

// memoryLimitPercent of the container's limit is the Go runtime's soft
// memory limit. The rest is headroom for what the container's cgroup is
// charged but the runtime does not count: the kernel's socket buffers of
// every stream (each TCP connection may buffer MiBs both ways) and the page
// cache of nothing else, since the server writes no files.
const memoryLimitPercent = 80

// memoryLimit returns the soft memory limit for the Go runtime from the
// environment, or 0 when none is to be set: GOMEMLIMIT set means the
// operator chose (the runtime has read it already), and without the
// container's limit there is nothing to take a fraction of.
func memoryLimit(getenv func(string) string) (int64, error) {
	if getenv("GOMEMLIMIT") != "" {
		return 0, nil
	}
	v := getenv(containerMemoryLimitEnv)
	if v == "" {
		return 0, nil
	}
	limit, err := strconv.ParseInt(v, 10, 64)
	if err != nil || limit <= 0 {
		return 0, fmt.Errorf("%s=%q: want the container's memory limit in bytes (resourceFieldRef limits.memory)", containerMemoryLimitEnv, v)
	}
	return limit / 100 * memoryLimitPercent, nil
}

// gcPercentUnderLimit is the GC's growth target (GOGC) once a memory limit
// bounds the heap. Every streamed GiB makes about 2 GiB of short-lived
// garbage that no option of the libraries avoids (x/crypto/ssh copies each
// packet out of its buffer, pkg/sftp allocates each response), and with the
// default 100 the GC marked the whole live heap (about 26 MiB, mostly the
// API machinery's caches) some 80 times per GiB: a quarter of the server's
// CPU per byte. At 800 it runs about 9 times per GiB, for a heap of at most
// nine times the live one; the memory limit still bounds it, so many
// streams at once make the GC work harder near the limit rather than grow
// past it (docs/speed.md, "Garbage collection").
const gcPercentUnderLimit = 800

// gcPercent returns the GOGC to set, or 0 to leave the runtime's: GOGC set
// means the operator chose, and without a memory limit nothing would bound
// a heap allowed to grow this far.
func gcPercent(getenv func(string) string, limited bool) int {
	if getenv("GOGC") != "" || !limited {
		return 0
	}
	return gcPercentUnderLimit
}
