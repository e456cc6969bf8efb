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

	"github.com/spf13/cobra"
)

func newRmCommand(o *Options) *cobra.Command {
	var recursive bool
	cmd := &cobra.Command{
		Use:               "rm WUKONG:/path...",
		Short:             "Remove files or directories inside a VM",
		Example:           "  kubectl wukong rm vm1:/tmp/old.log\n  kubectl wukong rm -r vm1:/tmp/build",
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: o.completeRemote(false),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, a := range args {
				r, err := mustRemote(a)
				if err != nil {
					return err
				}
				fc, err := o.client(r)
				if err != nil {
					return err
				}
				if err := fc.Delete(cmd.Context(), r.path, recursive); err != nil {
					return fmt.Errorf("%s: %w", r, explain(err))
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&recursive, "recursive", "r", false, "remove a directory and everything under it")
	return cmd
}
