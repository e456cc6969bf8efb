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
	"context"
	"path"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Shell completion asks the cluster, as kubectl's own completion does; a
// slow or unreachable cluster must not freeze the user's shell.
const completionTimeout = 5 * time.Second

// completeRemote completes WUKONG:/path arguments: the namespace's Wukongs
// as "NAME:" until a colon is typed, then the entries of the directory the
// path is in, directories with a trailing slash so that completion goes on.
// local says the argument may also be a local file (cp), which the shell
// completes when no Wukong matches.
func (o *Options) completeRemote(local bool) cobra.CompletionFunc {
	return func(cmd *cobra.Command, _ []string, word string) ([]cobra.Completion, cobra.ShellCompDirective) {
		ctx, cancel := context.WithTimeout(cmd.Context(), completionTimeout)
		defer cancel()
		r, ok := parseRemote(word)
		if !ok {
			names := o.wukongCandidates(ctx, word)
			if len(names) == 0 && local {
				return nil, cobra.ShellCompDirectiveDefault
			}
			return names, cobra.ShellCompDirectiveNoSpace | cobra.ShellCompDirectiveNoFileComp
		}
		dir := "/"
		if i := strings.LastIndex(r.path, "/"); i >= 0 {
			dir = r.path[:i+1]
		}
		fc, err := o.client(r)
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		list, err := fc.List(ctx, dir)
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		prefix := strings.TrimSuffix(word, r.path)
		var out []cobra.Completion
		for _, e := range list.Items {
			c := prefix + path.Join(dir, e.Name)
			if e.Type == "directory" {
				c += "/"
			}
			if strings.HasPrefix(c, word) {
				out = append(out, c)
			}
		}
		return out, cobra.ShellCompDirectiveNoSpace | cobra.ShellCompDirectiveNoFileComp
	}
}

// wukongCandidates are "[namespace/]NAME:" for the Wukongs whose names
// start with what was typed.
func (o *Options) wukongCandidates(ctx context.Context, word string) []cobra.Completion {
	ns, prefix, typedNS := "", word, ""
	if i := strings.IndexByte(word, '/'); i >= 0 {
		ns, prefix, typedNS = word[:i], word[i+1:], word[:i+1]
	} else if n, err := o.namespace(); err == nil {
		ns = n
	}
	cs, err := o.records()
	if err != nil {
		return nil
	}
	list, err := cs.VmV1alpha1().Wukongs(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil
	}
	var out []cobra.Completion
	for _, w := range list.Items {
		if strings.HasPrefix(w.Name, prefix) {
			out = append(out, typedNS+w.Name+":")
		}
	}
	return out
}

// completeDisks completes the first argument with the namespace's disks.
func (o *Options) completeDisks(cmd *cobra.Command, args []string, word string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 {
		// upload's second argument is a local image.
		return nil, cobra.ShellCompDirectiveDefault
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), completionTimeout)
	defer cancel()
	ns, err := o.namespace()
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	cs, err := o.records()
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	list, err := cs.VmV1alpha1().Disks(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	var out []cobra.Completion
	for _, d := range list.Items {
		if strings.HasPrefix(d.Name, word) {
			out = append(out, d.Name)
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}
