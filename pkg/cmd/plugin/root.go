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

// Package plugin is kubectl-wukong, the kubectl plugin for Wukong: cp, ls
// and rm of files inside VMs, export and upload of disks, and transfers (the
// WukongFileTransfer records).
// It takes kubectl's connection flags (kubeconfig, context, namespace, ...)
// through cli-runtime.
package plugin

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/time/rate"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/novasphere/wukong/pkg/client/transfers"
	"github.com/novasphere/wukong/pkg/generated/clientset/versioned"
	"github.com/novasphere/wukong/pkg/version"
)

// Options are what every subcommand shares.
type Options struct {
	genericiooptions.IOStreams
	config *genericclioptions.ConfigFlags

	parallel  int
	retries   int
	chunkSize string
	limitRate string
	quiet     bool
}

// NewCommand returns the kubectl-wukong command tree.
func NewCommand(streams genericiooptions.IOStreams) *cobra.Command {
	o := &Options{IOStreams: streams, config: genericclioptions.NewConfigFlags(true)}
	root := &cobra.Command{
		Use:   "kubectl-wukong",
		Short: "Copy files in and out of Wukong VMs through the Kubernetes API",
		Long: `kubectl wukong moves files in and out of running Wukong VMs through
kube-apiserver, with nothing but kubectl's credentials and RBAC. Files of any
size go as parallel chunks, each well inside kube-apiserver's request timeout,
tied to one WukongFileTransfer record; an interrupted copy resumes with --resume.`,
		Annotations:   map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl wukong"},
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version.Get().String(),
	}
	root.SetVersionTemplate("kubectl-wukong {{.Version}}\n")
	root.SetOut(streams.Out)
	root.SetErr(streams.ErrOut)
	o.config.AddFlags(root.PersistentFlags())
	pf := root.PersistentFlags()
	pf.IntVar(&o.parallel, "parallel", transfers.DefaultParallel, "chunks in flight at once")
	pf.IntVar(&o.retries, "retries", transfers.DefaultRetries, "how often one chunk is tried again after a failure that may pass, with backoff (8 rides out about 40 s)")
	pf.StringVar(&o.chunkSize, "chunk-size", "32Mi", "bytes per request of a chunked transfer; each request must fit kube-apiserver's --request-timeout")
	pf.StringVar(&o.limitRate, "limit-rate", "", "cap the rate of chunked transfers and disk uploads, in bytes per second (e.g. 50Mi)")
	pf.BoolVarP(&o.quiet, "quiet", "q", false, "no progress bar (there is none when stderr is not a terminal)")
	addProfilingFlags(root)
	root.AddCommand(newCpCommand(o), newLsCommand(o), newRmCommand(o), newExportCommand(o), newUploadCommand(o), newTransfersCommand(o))
	root.AddCommand(newStartCommand(o), newStopCommand(o))
	root.AddCommand(newApplyCommand(o), newRunCommand(o))
	return root
}

func (o *Options) namespace() (string, error) {
	ns, _, err := o.config.ToRawKubeConfigLoader().Namespace()
	return ns, err
}

// client returns a files client for the Wukong named in r.
func (o *Options) client(r remote) (*transfers.Client, error) {
	cfg, err := o.config.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	ns := r.namespace
	if ns == "" {
		if ns, err = o.namespace(); err != nil {
			return nil, err
		}
	}
	c, err := transfers.New(cfg, ns, r.wukong)
	if err != nil {
		return nil, err
	}
	return c, o.tune(c)
}

// diskClient returns a client of disk name's subresource (export or upload).
func (o *Options) diskClient(ctx context.Context, name, subresource string) (*transfers.Client, error) {
	cfg, err := o.config.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	ns, err := o.namespace()
	if err != nil {
		return nil, err
	}
	cs, err := versioned.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	d, err := cs.VmV1alpha1().Disks(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, explain(err)
	}
	c, err := transfers.ForDisk(cfg, d, subresource)
	if err != nil {
		return nil, err
	}
	return c, o.tune(c)
}

// tune applies the chunk, parallelism and rate flags.
func (o *Options) tune(c *transfers.Client) error {
	var err error
	if c.ChunkSize, err = quantity("--chunk-size", o.chunkSize); err != nil {
		return err
	}
	if c.ChunkSize <= 0 {
		return fmt.Errorf("--chunk-size must be positive")
	}
	c.Parallel = max(1, o.parallel)
	c.Retries = max(0, o.retries)
	// Waits for a busy server are said on stderr, as kubectl's warnings are.
	c.Notify = func(msg string) { fmt.Fprintf(o.ErrOut, "kubectl wukong: %s\n", msg) }
	if o.limitRate != "" {
		bps, err := quantity("--limit-rate", o.limitRate)
		if err != nil {
			return err
		}
		burst := int(min(bps, 1<<20))
		c.Limiter = rate.NewLimiter(rate.Limit(bps), max(burst, 1))
	}
	return nil
}

func (o *Options) records() (versioned.Interface, error) {
	cfg, err := o.config.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	return versioned.NewForConfig(cfg)
}

func quantity(flag, s string) (int64, error) {
	q, err := resource.ParseQuantity(s)
	if err != nil {
		return 0, fmt.Errorf("%s %q: %w", flag, s, err)
	}
	return q.Value(), nil
}

// remote is "[namespace/]wukong:/path".
type remote struct {
	namespace, wukong, path string
}

var remoteRE = regexp.MustCompile(`^(?:([a-z0-9]([-a-z0-9]*[a-z0-9])?)/)?([a-z0-9]([-.a-z0-9]*[a-z0-9])?):(.*)$`)

// parseRemote splits s into a remote, or says it is local.
func parseRemote(s string) (remote, bool) {
	m := remoteRE.FindStringSubmatch(s)
	if m == nil {
		return remote{}, false
	}
	return remote{namespace: m[1], wukong: m[3], path: m[5]}, true
}

// mustRemote parses an argument that has to name a path in a VM.
func mustRemote(s string) (remote, error) {
	r, ok := parseRemote(s)
	if !ok {
		return r, fmt.Errorf("%q does not name a file in a VM: write WUKONG:/path or NAMESPACE/WUKONG:/path", s)
	}
	if !strings.HasPrefix(r.path, "/") {
		return r, fmt.Errorf("%q: paths inside the VM are absolute (WUKONG:/path)", s)
	}
	return r, nil
}

func (r remote) String() string {
	if r.namespace != "" {
		return r.namespace + "/" + r.wukong + ":" + r.path
	}
	return r.wukong + ":" + r.path
}
