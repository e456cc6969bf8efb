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

package agent

import (
	"os"
	"syscall"
)

// statFS asks the kernel about the filesystem of the open file f.
func statFS(f *os.File) (StatFSResponse, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return StatFSResponse{}, err
	}
	var st syscall.Statfs_t
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = syscall.Fstatfs(int(fd), &st) }); err != nil {
		return StatFSResponse{}, err
	}
	if serr != nil {
		return StatFSResponse{}, &os.PathError{Op: "fstatfs", Path: f.Name(), Err: serr}
	}
	bs := uint64(st.Bsize)
	return StatFSResponse{TotalBytes: st.Blocks * bs, FreeBytes: st.Bfree * bs, AvailBytes: st.Bavail * bs}, nil
}
