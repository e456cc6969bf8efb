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

package plugin

import (
	"fmt"
	"os"
	"runtime/pprof"

	"github.com/spf13/cobra"
)

// addProfilingFlags gives the plugin kubectl's --profile and
// --profile-output (cpu only), so that a slow copy can be looked into
// the same way as a slow kubectl.
func addProfilingFlags(root *cobra.Command) {
	var profile, output string
	pf := root.PersistentFlags()
	pf.StringVar(&profile, "profile", "none", "name of the profile to capture: none or cpu")
	pf.StringVar(&output, "profile-output", "profile.pprof", "file to write the profile to")
	_ = pf.MarkHidden("profile")
	_ = pf.MarkHidden("profile-output")
	var f *os.File
	root.PersistentPreRunE = func(*cobra.Command, []string) error {
		switch profile {
		case "none":
			return nil
		case "cpu":
		default:
			return fmt.Errorf("--profile %q: only none and cpu are supported", profile)
		}
		var err error
		if f, err = os.Create(output); err != nil {
			return err
		}
		return pprof.StartCPUProfile(f)
	}
	root.PersistentPostRunE = func(*cobra.Command, []string) error {
		if f == nil {
			return nil
		}
		pprof.StopCPUProfile()
		return f.Close()
	}
}
