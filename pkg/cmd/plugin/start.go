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
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
)

// pollInterval is how often --wait reads the Wukong: one GET a second is
// cheap, and unlike a watch it does not end with kube-apiserver's watch
// timeout or a restart of wukong-apiserver.
var pollInterval = time.Second

// runStrategyChange is what start and stop do: set spec.runStrategy, then
// wait for the phase that follows.
type runStrategyChange struct {
	*Options
	verb     string // start, stop
	strategy string // the run strategy it sets
	phase    string // the phase it waits for
	wait     bool
	timeout  time.Duration
}

func newStartCommand(o *Options) *cobra.Command {
	return newRunStrategyCommand(&runStrategyChange{Options: o, verb: "start", strategy: v1alpha1.RunStrategyAlways, phase: v1alpha1.WukongPhaseRunning},
		"Start a Wukong's VM (spec.runStrategy: Always)",
		`Start the VM of a Wukong: set its spec.runStrategy to Always, with which
KubeVirt starts the VM and restarts it whenever it stops, and wait until its
phase is Running. It needs the right to patch wukongs (the edit role).`,
		"  kubectl wukong start vm1\n  kubectl wukong start vm1 --wait=false")
}

func newStopCommand(o *Options) *cobra.Command {
	return newRunStrategyCommand(&runStrategyChange{Options: o, verb: "stop", strategy: v1alpha1.RunStrategyHalted, phase: v1alpha1.WukongPhaseStopped},
		"Stop a Wukong's VM (spec.runStrategy: Halted)",
		`Stop the VM of a Wukong: set its spec.runStrategy to Halted, with which
KubeVirt stops the VM (its VirtualMachineInstance goes; the disks stay), and
wait until its phase is Stopped. Files cannot be copied while it is stopped.
It needs the right to patch wukongs (the edit role).`,
		"  kubectl wukong stop vm1\n  kubectl wukong stop vm1 --timeout 10m")
}

func newRunStrategyCommand(c *runStrategyChange, short, long, example string) *cobra.Command {
	cmd := &cobra.Command{
		Use:               c.verb + " WUKONG",
		Short:             short,
		Long:              long,
		Example:           example,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: c.completeWukongs,
		RunE:              func(cmd *cobra.Command, args []string) error { return c.run(cmd.Context(), args[0]) },
	}
	cmd.Flags().BoolVar(&c.wait, "wait", true, "wait until the VM's phase is "+c.phase)
	cmd.Flags().DurationVar(&c.timeout, "timeout", 5*time.Minute, "how long --wait waits")
	return cmd
}

func (c *runStrategyChange) run(ctx context.Context, name string) error {
	if c.wait && c.timeout <= 0 {
		return fmt.Errorf("--timeout must be positive")
	}
	ns, err := c.namespace()
	if err != nil {
		return err
	}
	cs, err := c.records()
	if err != nil {
		return err
	}
	wukongs := cs.VmV1alpha1().Wukongs(ns)
	old, err := wukongs.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return explain(err)
	}
	was := strategyOf(old)
	// A merge patch of the one field: nothing else of the spec is sent, so
	// a concurrent edit of another field is not undone.
	patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"runStrategy": c.strategy}})
	w, err := wukongs.Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
	if apierrors.IsForbidden(err) {
		return fmt.Errorf("%w (kubectl wukong %s patches the Wukong's spec.runStrategy: it needs patch on wukongs, as the edit role gives)", explain(err), c.verb)
	}
	if err != nil {
		return explain(err)
	}
	if was == c.strategy {
		fmt.Fprintf(c.Out, "wukong/%s: spec.runStrategy is %s already\n", name, c.strategy)
	} else {
		fmt.Fprintf(c.Out, "wukong/%s: spec.runStrategy %s (was %s)\n", name, c.strategy, was)
	}
	if !c.wait {
		return nil
	}
	return c.waitFor(ctx, name, w.Generation)
}

// waitFor polls the Wukong until its status, written for generation or a
// later one (an older status may still show the phase from before the
// change), has the phase asked for.
func (c *runStrategyChange) waitFor(ctx context.Context, name string, generation int64) error {
	ns, err := c.namespace()
	if err != nil {
		return err
	}
	cs, err := c.records()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	said := ""
	var last *v1alpha1.Wukong
	for {
		w, err := cs.VmV1alpha1().Wukongs(ns).Get(ctx, name, metav1.GetOptions{})
		switch {
		case err == nil:
			last = w
			current := w.Status.ObservedGeneration >= generation
			if current && w.Status.Phase == c.phase {
				fmt.Fprintf(c.Out, "wukong/%s: %s\n", name, describe(w))
				return nil
			}
			if current && w.Status.Phase == v1alpha1.WukongPhaseFailed {
				if why := why(w); why != "" {
					return fmt.Errorf("wukong/%s failed: %s", name, why)
				}
				return fmt.Errorf("wukong/%s failed (kubectl get wukong %s -o yaml shows its status)", name, name)
			}
			if strategyOf(w) != c.strategy {
				return fmt.Errorf("wukong/%s: spec.runStrategy was changed to %s meanwhile; not waiting for %s", name, strategyOf(w), c.phase)
			}
			if p := w.Status.Phase; current && p != said && !c.quiet {
				fmt.Fprintf(c.ErrOut, "wukong/%s: %s\n", name, p)
				said = p
			}
		case apierrors.IsNotFound(err):
			return fmt.Errorf("wukong/%s was deleted while waiting for it to %s", name, c.verb)
		case ctx.Err() == nil && !retriable(err):
			return explain(err)
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("wukong/%s is not %s after %s: %s; kubectl get wukong %s -w shows when it is", name, c.phase, c.timeout, where(last), name)
			}
			return ctx.Err()
		case <-time.After(pollInterval):
		}
	}
}

// retriable: a failure that a later poll may not see (a restarting
// server, a timeout, a busy server).
func retriable(err error) bool {
	return apierrors.IsServiceUnavailable(err) || apierrors.IsTimeout(err) || apierrors.IsServerTimeout(err) ||
		apierrors.IsTooManyRequests(err) || apierrors.IsInternalError(err) || !isStatus(err)
}

func isStatus(err error) bool {
	var st apierrors.APIStatus
	return errors.As(err, &st)
}

func strategyOf(w *v1alpha1.Wukong) string {
	if w.Spec.RunStrategy == "" {
		return v1alpha1.RunStrategyAlways
	}
	return w.Spec.RunStrategy
}

// describe is the phase, with the address of a running VM.
func describe(w *v1alpha1.Wukong) string {
	if w.Status.Phase == v1alpha1.WukongPhaseRunning && w.Status.Address != "" {
		return "Running at " + w.Status.Address
	}
	return w.Status.Phase
}

// why is what the conditions say against the VM running.
func why(w *v1alpha1.Wukong) string {
	var msgs []string
	for _, t := range []string{"Imported", "Ready"} {
		if c := meta.FindStatusCondition(w.Status.Conditions, t); c != nil && c.Status != metav1.ConditionTrue && c.Message != "" {
			msgs = append(msgs, c.Message)
		}
	}
	return strings.Join(msgs, "; ")
}

// where says how far the VM got.
func where(w *v1alpha1.Wukong) string {
	if w == nil {
		return "its status could not be read"
	}
	if w.Status.Phase == "" {
		return "it has no phase yet"
	}
	if why := why(w); why != "" {
		return "its phase is " + w.Status.Phase + " (" + why + ")"
	}
	return "its phase is " + w.Status.Phase
}

// completeWukongs completes the one argument with the namespace's Wukongs.
func (c *runStrategyChange) completeWukongs(cmd *cobra.Command, args []string, word string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), completionTimeout)
	defer cancel()
	if strings.Contains(word, "/") {
		return nil, cobra.ShellCompDirectiveNoFileComp // start and stop take -n, not NAMESPACE/NAME
	}
	var out []cobra.Completion
	for _, n := range c.wukongCandidates(ctx, word) {
		out = append(out, strings.TrimSuffix(n, ":"))
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}
