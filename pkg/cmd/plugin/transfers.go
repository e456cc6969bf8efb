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
	"io"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/cli-runtime/pkg/printers"

	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
)

func newTransfersCommand(o *Options) *cobra.Command {
	var (
		watchFlag, all bool
	)
	cmd := &cobra.Command{
		Use:     "transfers [WUKONG]",
		Aliases: []string{"transfer", "wft"},
		Short:   "List file transfers (WukongFileTransfer records), or watch them move",
		Example: "  kubectl wukong transfers\n  kubectl wukong transfers vm1 -w",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cs, err := o.records()
			if err != nil {
				return err
			}
			ns := metav1.NamespaceAll
			if !all {
				if ns, err = o.namespace(); err != nil {
					return err
				}
			}
			opts := metav1.ListOptions{}
			if len(args) == 1 {
				opts.FieldSelector = fields.OneTermEqualSelector("spec.wukongName", args[0]).String()
			}
			records := cs.VmV1alpha1().WukongFileTransfers(ns)
			list, err := records.List(cmd.Context(), opts)
			if err != nil {
				return err
			}
			w := printers.GetNewTabWriter(o.Out)
			printHeader(w, all)
			for i := range list.Items {
				printRecord(w, &list.Items[i], all)
			}
			w.Flush()
			if !watchFlag {
				return nil
			}
			opts.ResourceVersion = list.ResourceVersion
			wi, err := records.Watch(cmd.Context(), opts)
			if err != nil {
				return err
			}
			defer wi.Stop()
			for ev := range wi.ResultChan() {
				switch ev.Type {
				case watch.Added, watch.Modified, watch.Deleted:
					if rec, ok := ev.Object.(*v1alpha1.WukongFileTransfer); ok {
						printRecord(w, rec, all)
						w.Flush()
					}
				case watch.Error:
					return fmt.Errorf("watch: %v", ev.Object)
				}
			}
			return cmd.Context().Err()
		},
	}
	cmd.Flags().BoolVarP(&watchFlag, "watch", "w", false, "after listing, print each change")
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "records of every namespace")
	return cmd
}

func printHeader(w io.Writer, all bool) {
	if all {
		fmt.Fprint(w, "NAMESPACE\t")
	}
	fmt.Fprintln(w, "NAME\tWUKONG\tOPERATION\tPATH\tPHASE\tPROGRESS\tBYTES\tRATE\tAGE")
}

func printRecord(w io.Writer, r *v1alpha1.WukongFileTransfer, all bool) {
	if all {
		fmt.Fprintf(w, "%s\t", r.Namespace)
	}
	p := r.Spec.RemotePath
	if p == "" {
		p = r.Spec.Disk
	}
	progress := r.Status.Progress
	if progress == "" {
		progress = "-"
	}
	fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s/s\t%s\n", r.Name, r.Spec.WukongName, r.Spec.Operation, p,
		r.Status.Phase, progress, bytes(r.Status.BytesTransferred), bytes(r.Status.BytesPerSecond),
		duration.HumanDuration(time.Since(r.CreationTimestamp.Time)))
}

// bytes prints n as kubectl users read sizes: 512, 3.2Ki, 1.0Gi.
func bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprint(n)
	}
	v, i := float64(n), -1
	for v >= unit && i < 4 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f%ci", v, "KMGTP"[i])
}
