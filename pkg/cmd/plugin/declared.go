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
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/client/transfers"
)

// Declared transfers: a WukongFileTransfer a user writes as YAML. One with
// spec.source is executed by the server; one with spec.localPath names a
// file on the user's machine, which this client sends, bound to the record.

func newApplyCommand(o *Options) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "apply -f FILE",
		Short: "Create WukongFileTransfers from a file and perform them",
		Long: `Create each WukongFileTransfer of FILE (or take the one that exists under its
name) and perform it: one with spec.localPath is sent from this machine, bound
to the record (the record shows its progress and ends Succeeded or Failed);
one with spec.source is copied by the server, and this command waits for it.`,
		Example: "  kubectl wukong apply -f upload-config.yaml",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return errors.New("-f FILE is required")
			}
			return o.apply(cmd.Context(), file)
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", "YAML of one or more WukongFileTransfers, - for standard input")
	return cmd
}

func newRunCommand(o *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "run NAME",
		Short: "Perform a WukongFileTransfer that was created and waits for a client",
		Long: `Perform the declared WukongFileTransfer NAME from this machine: its
spec.localPath is sent to spec.remotePath of its Wukong, bound to the record.
An interrupted run continues where it stopped when run again.`,
		Example: "  kubectl apply -f upload-config.yaml && kubectl wukong run upload-config",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ns, err := o.namespace()
			if err != nil {
				return err
			}
			cs, err := o.records()
			if err != nil {
				return err
			}
			rec, err := cs.VmV1alpha1().WukongFileTransfers(ns).Get(cmd.Context(), args[0], metav1.GetOptions{})
			if err != nil {
				return explain(err)
			}
			return o.perform(cmd.Context(), rec)
		},
	}
}

// apply creates (or takes) each transfer of file and performs it.
func (o *Options) apply(ctx context.Context, file string) error {
	var in io.Reader = o.In
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	defaultNS, err := o.namespace()
	if err != nil {
		return err
	}
	cs, err := o.records()
	if err != nil {
		return err
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bufio.NewReader(in), 4096)
	for {
		var t v1alpha1.WukongFileTransfer
		if err := dec.Decode(&t); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		if t.Kind == "" && t.Name == "" {
			continue // an empty document
		}
		if t.Kind != "WukongFileTransfer" || t.APIVersion != v1alpha1.SchemeGroupVersion.String() {
			return fmt.Errorf("%s: %s %s is not a %s WukongFileTransfer", file, t.APIVersion, t.Kind, v1alpha1.SchemeGroupVersion)
		}
		ns := t.Namespace
		if ns == "" {
			ns = defaultNS
		}
		records := cs.VmV1alpha1().WukongFileTransfers(ns)
		rec, err := records.Create(ctx, &t, metav1.CreateOptions{})
		switch {
		case apierrors.IsAlreadyExists(err):
			if rec, err = records.Get(ctx, t.Name, metav1.GetOptions{}); err != nil {
				return explain(err)
			}
			fmt.Fprintf(o.Out, "wukongfiletransfer/%s exists (%s)\n", rec.Name, rec.Status.Phase)
		case err != nil:
			return explain(err)
		default:
			fmt.Fprintf(o.Out, "wukongfiletransfer/%s created\n", rec.Name)
		}
		if err := o.perform(ctx, rec); err != nil {
			return err
		}
	}
}

// perform runs the declared transfer rec: sends its localPath, or waits for
// the server to copy its source.
func (o *Options) perform(ctx context.Context, rec *v1alpha1.WukongFileTransfer) error {
	if rec.Labels[v1alpha1.LabelDeclared] != "true" {
		return fmt.Errorf("transfer %s is the server's record of a stream, not a declared transfer", rec.Name)
	}
	fc, err := o.client(remote{namespace: rec.Namespace, wukong: rec.Spec.WukongName, path: rec.Spec.RemotePath})
	if err != nil {
		return err
	}
	if rec.Spec.Source != nil {
		end, err := fc.WaitEnded(ctx, rec.Name)
		if err != nil {
			return explain(err)
		}
		return o.ended(end)
	}
	switch {
	case rec.Spec.LocalPath == "":
		return fmt.Errorf("transfer %s names no localPath: its chunks are sent with the files subresource (transfer=%s)", rec.Name, rec.Name)
	case rec.Spec.Operation != v1alpha1.OperationUpload:
		return fmt.Errorf("transfer %s is a %s: kubectl wukong run sends uploads; fetch with kubectl wukong cp %s:%s %s", rec.Name, rec.Spec.Operation, rec.Spec.WukongName, rec.Spec.RemotePath, rec.Spec.LocalPath)
	case rec.Status.Phase == v1alpha1.FileTransferPhaseSucceeded || rec.Status.Phase == v1alpha1.FileTransferPhaseFailed:
		return o.ended(rec)
	}
	progress := newProgress(o.ErrOut, o.quiet, path.Base(rec.Spec.RemotePath))
	res, err := fc.RunDeclared(ctx, rec.Spec.LocalPath, rec, transfers.UploadOptions{Progress: progress})
	finish(progress)
	if err != nil {
		return explain(err)
	}
	fmt.Fprintf(o.Out, "wukongfiletransfer/%s Succeeded: %d bytes of %s to %s:%s, sha256 %s\n", rec.Name, res.Size, rec.Spec.LocalPath, rec.Spec.WukongName, rec.Spec.RemotePath, res.SHA256)
	return nil
}

// ended says how a transfer ended; a failed one is an error.
func (o *Options) ended(rec *v1alpha1.WukongFileTransfer) error {
	if rec.Status.Phase != v1alpha1.FileTransferPhaseSucceeded {
		return fmt.Errorf("transfer %s %s: %s", rec.Name, rec.Status.Phase, rec.Status.Message)
	}
	fmt.Fprintf(o.Out, "wukongfiletransfer/%s Succeeded: %s, sha256 %s\n", rec.Name, rec.Status.Message, rec.Status.SHA256)
	return nil
}
