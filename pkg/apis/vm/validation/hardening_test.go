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

package validation

import (
	"strings"
	"testing"

	"github.com/novasphere/wukong/pkg/apis/vm"
)

// TestValidateSSHUser: sshConfig.user goes into cloud-init YAML and an SSH
// login, so only a POSIX user name passes.
func TestValidateSSHUser(t *testing.T) {
	for _, user := range []string{"fedora", "cloud-user", "_svc", "a", "u1", "ubuntu_2", "machine$", strings.Repeat("a", 32)} {
		w := validWukong()
		w.Spec.FileTransfer.SSHConfig.User = user
		if errs := ValidateWukong(w); len(errs) != 0 {
			t.Errorf("user %q refused: %v", user, errs)
		}
	}
	for name, user := range map[string]string{
		"newline":            "root\n  - evil",
		"yaml injection":     "x\nruncmd: [reboot]",
		"colon":              "root:x",
		"yaml flow":          "{a: b}",
		"space":              "bad user",
		"upper case":         "Fedora",
		"leading digit":      "1user",
		"leading dash":       "-oProxyCommand=x",
		"dot":                "a.b",
		"slash":              "../root",
		"quote":              `a"b`,
		"too long":           strings.Repeat("a", 33),
		"dollar not at end":  "a$b",
		"only dollar":        "$",
		"non-ascii":          "usér",
		"NUL":                "a\x00b",
		"hash comment":       "a#b",
		"trailing newline":   "fedora\n",
		"carriage return":    "fedora\r",
		"leading whitespace": " fedora",
	} {
		w := validWukong()
		w.Spec.FileTransfer.SSHConfig.User = user
		errs := ValidateWukong(w)
		if len(errs) != 1 || errs[0].Field != "spec.fileTransfer.sshConfig.user" {
			t.Errorf("%s (%q): want one error on spec.fileTransfer.sshConfig.user, got %v", name, user, errs)
		}
	}
}

// TestRecursiveDeleteOfRoot: one request may not wipe a VM.
func TestRecursiveDeleteOfRoot(t *testing.T) {
	for _, p := range []string{"/", "//", "/.", "/a/..", "/../.."} {
		errs := ValidateWukongFileOptions(&vm.WukongFileOptions{Path: p, Recursive: true})
		found := false
		for _, e := range errs {
			found = found || e.Field == "recursive"
		}
		if !found {
			t.Errorf("recursive delete of %q: want an error on recursive, got %v", p, errs)
		}
	}
	for _, o := range []vm.WukongFileOptions{{Path: "/", Recursive: false}, {Path: "/tmp", Recursive: true}} {
		if errs := ValidateWukongFileOptions(&o); len(errs) != 0 {
			t.Errorf("%+v refused: %v", o, errs)
		}
	}
}
