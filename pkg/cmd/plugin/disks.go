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
	"fmt"
	"slices"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/novasphere/wukong/pkg/apis/vm/validation"
	"github.com/novasphere/wukong/pkg/client/transfers"
)

type exportOptions struct {
	*Options
	output       string
	format       string
	resume       bool
	ttl          time.Duration
	snapshot     string
	readyTimeout time.Duration
}

// Values of export's flags, for checks and shell completion.
var (
	exportFormats   = []string{"raw", "qcow2", "gzip"}
	snapshotChoices = []string{"auto", "true", "false"}
)

func newExportCommand(o *Options) *cobra.Command {
	e := &exportOptions{Options: o}
	cmd := &cobra.Command{
		Use:   "export DISK -o FILE",
		Short: "Download a VM disk (disks/<name>/export)",
		Long: `Download a disk of a Wukong VM, named <wukong>-<disk> as kubectl get disks
lists it, through KubeVirt's VirtualMachineExport: wukong-apiserver creates
the export, waits for it and streams the volume; the export token never
leaves the cluster.

While KubeVirt prepares the export (a VirtualMachineExport, or first a
VirtualMachineSnapshot of a running VM) the command waits, up to
--ready-timeout, and says what it waits for; then a progress bar shows the
bytes.

The raw volume, or its qcow2 image (--format qcow2, written by
wukong-apiserver as the disk streams), goes as parallel ranged chunks tied to
one WukongFileTransfer, each well inside kube-apiserver's request timeout and
each checked by sha256; FILE appears only when complete, and an interrupted
export continues with --resume. --format gzip (or -o -) streams over one
WebSocket instead.

--ttl sets how long KubeVirt keeps the export after it is made (bounded by
the server), and --snapshot whether the disk is read through a snapshot of
the VM (auto: when the VM runs).`,
		Example: `  kubectl wukong export vm1-system -o disk.img
  kubectl wukong export --resume vm1-system -o disk.img
  kubectl wukong export vm1-system --format qcow2 -o disk.qcow2
  kubectl wukong export vm1-system --format gzip --ttl 30m -o disk.img.gz`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: o.completeDisks,
		RunE:              func(cmd *cobra.Command, args []string) error { return e.run(cmd.Context(), args[0]) },
	}
	f := cmd.Flags()
	f.StringVarP(&e.output, "output", "o", "", "local file to write, or - for standard output")
	f.StringVar(&e.format, "format", "raw", "raw or qcow2 (chunked, resumable), or gzip (streamed, not resumable)")
	f.BoolVar(&e.resume, "resume", false, "continue an interrupted export into the same file, fetching only what is missing")
	f.DurationVar(&e.ttl, "ttl", 0, "how long KubeVirt keeps the export after it is made, e.g. 30m (default: the server's)")
	f.StringVar(&e.snapshot, "snapshot", "auto", "read the disk through a VirtualMachineSnapshot: auto (when the VM runs), true or false")
	f.DurationVar(&e.readyTimeout, "ready-timeout", transfers.DefaultReadyTimeout, "how long to wait for KubeVirt to prepare the export")
	_ = cmd.MarkFlagRequired("output")
	_ = cmd.RegisterFlagCompletionFunc("format", cobra.FixedCompletions(exportFormats, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("snapshot", cobra.FixedCompletions(snapshotChoices, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("ttl", cobra.FixedCompletions([]string{"30m", "1h", "2h", "12h"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func (e *exportOptions) run(ctx context.Context, disk string) error {
	if !slices.Contains(exportFormats, e.format) {
		return fmt.Errorf("--format %q: use raw, qcow2 or gzip", e.format)
	}
	if !slices.Contains(snapshotChoices, e.snapshot) {
		return fmt.Errorf("--snapshot %q: use auto, true or false", e.snapshot)
	}
	if e.ttl < 0 || e.readyTimeout <= 0 {
		return fmt.Errorf("--ttl and --ready-timeout take a positive duration")
	}
	c, err := e.diskClient(ctx, disk, "export")
	if err != nil {
		return err
	}
	c.SetExportOptions(transfers.ExportOptions{Format: e.format, TTL: e.ttl, Snapshot: e.snapshot})
	c.ReadyTimeout = e.readyTimeout
	progress := newProgress(e.ErrOut, e.quiet, disk)
	defer finish(progress)
	switch {
	case e.output == "-":
		_, err = c.ExportDiskStream(ctx, e.Out, e.format, progress)
	case e.format == "gzip":
		_, err = c.ExportDiskStreamTo(ctx, e.output, e.format, progress)
	default:
		_, err = c.ExportDisk(ctx, e.output, transfers.DownloadOptions{Resume: e.resume, Progress: progress})
	}
	return explain(err)
}

type uploadOptions struct {
	*Options
	sha256     string
	noChecksum bool
}

func newUploadCommand(o *Options) *cobra.Command {
	u := &uploadOptions{Options: o}
	cmd := &cobra.Command{
		Use:   "upload DISK FILE",
		Short: "Upload a disk image into a VM disk (disks/<name>/upload)",
		Long: `Upload a local disk image (raw, qcow2, compressed) into a disk of a Wukong VM
whose importSource has type upload, through CDI's upload proxy; for a disk of
contentType archive, FILE is a tar of files. wukong-apiserver waits for CDI's
upload server and holds CDI's token; the image streams over one WebSocket,
which kube-apiserver does not time out. FILE may be - for standard input.

The sha256 of FILE is computed first and checked by the server on the
stream: if the bytes that arrive differ, the upload fails before CDI has all
of them.

While CDI starts its upload server the server answers 409 with Retry-After,
and the upload waits. CDI cannot resume an upload (its upload server takes
no offset and keeps nothing of an incomplete one), so an upload of FILE that
breaks is sent again from byte 0, --retries times at most, each attempt with
its own transfer record; an upload from - cannot be sent again.`,
		Example: `  kubectl wukong upload vm1-system ./image.qcow2
  xz -dc image.raw.xz | kubectl wukong upload vm1-system -`,
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: o.completeDisks,
		RunE:              func(cmd *cobra.Command, args []string) error { return u.run(cmd.Context(), args[0], args[1]) },
	}
	f := cmd.Flags()
	f.StringVar(&u.sha256, "sha256", "", "the sha256 the image must have, in hex (default: computed from FILE)")
	f.BoolVar(&u.noChecksum, "no-checksum", false, "do not compute FILE's sha256 before sending")
	return cmd
}

func (u *uploadOptions) run(ctx context.Context, disk, file string) error {
	if errs := validation.ValidateSHA256(u.sha256, field.NewPath("--sha256")); len(errs) > 0 {
		return errs.ToAggregate()
	}
	c, err := u.diskClient(ctx, disk, "upload")
	if err != nil {
		return err
	}
	progress := newProgress(u.ErrOut, u.quiet, disk)
	defer finish(progress)
	if file == "-" {
		_, err = c.UploadDisk(ctx, u.In, -1, u.sha256, progress)
	} else {
		_, err = c.UploadDiskFile(ctx, file, u.sha256, !u.noChecksum, progress)
	}
	return explain(err)
}
