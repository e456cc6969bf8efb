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

// Command wukong-apiserver serves vm.novasphere.dev/v1alpha1 behind an APIService.
package main

import (
	"fmt"
	"os"
	"runtime/debug"

	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/component-base/cli"
	"k8s.io/klog/v2"

	"github.com/novasphere/wukong/pkg/cmd/server"
)

func main() {
	// The runtime's soft memory limit, from the container's (memlimit.go):
	// the GC works harder near it instead of the kernel killing the pod.
	limit, err := memoryLimit(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if limit > 0 {
		debug.SetMemoryLimit(limit)
		klog.InfoS("Go memory limit set from the container's", "bytes", limit, "percent", memoryLimitPercent)
	}
	// With a limit bounding the heap, the GC may let it grow further between
	// cycles: streaming is mostly garbage (memlimit.go).
	if gc := gcPercent(os.Getenv, limit > 0 || os.Getenv("GOMEMLIMIT") != ""); gc > 0 {
		debug.SetGCPercent(gc)
		klog.InfoS("Go GC target set under the memory limit", "GOGC", gc)
	}
	ctx := genericapiserver.SetupSignalContext()
	cmd := server.NewCommand(ctx, server.NewOptions(os.Stdout, os.Stderr))
	os.Exit(cli.Run(cmd))
}
