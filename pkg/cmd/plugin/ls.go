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
	"encoding/json"
	"fmt"
	"path"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/printers"

	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
)

func newLsCommand(o *Options) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:               "ls WUKONG:/path",
		Short:             "List a directory (or describe a file) inside a VM",
		Example:           "  kubectl wukong ls vm1:/var/log\n  kubectl wukong ls -o json vm1:/etc/hosts",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: o.completeRemote(false),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := mustRemote(args[0])
			if err != nil {
				return err
			}
			fc, err := o.client(r)
			if err != nil {
				return err
			}
			info, err := fc.Stat(cmd.Context(), r.path)
			if err != nil {
				return explain(err)
			}
			list := &v1alpha1.WukongFileList{Path: path.Dir(r.path), Items: []v1alpha1.FileInfo{*info}}
			if info.Type == "directory" {
				if list, err = fc.List(cmd.Context(), r.path); err != nil {
					return explain(err)
				}
			}
			switch output {
			case "json":
				enc := json.NewEncoder(o.Out)
				enc.SetIndent("", "  ")
				return enc.Encode(list)
			case "":
				w := printers.GetNewTabWriter(o.Out)
				defer w.Flush()
				for _, e := range list.Items {
					name := e.Name
					if e.LinkTarget != "" {
						name += " -> " + e.LinkTarget
					}
					fmt.Fprintf(w, "%s\t%d\t%s\t%s\n", e.Mode, e.Size, e.ModTime.UTC().Format("2006-01-02 15:04"), name)
				}
				return nil
			default:
				return fmt.Errorf("--output %q: use json, or leave it out for ls -l columns", output)
			}
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "json, or empty for ls -l columns")
	return cmd
}
