package plugin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"

	"github.com/spf13/cobra"

	"github.com/novasphere/wukong/pkg/client/transfers"
)

type exportOptions struct {
	*Options
	output string
	format string
	resume bool
}

func newExportCommand(o *Options) *cobra.Command {
	e := &exportOptions{Options: o}
	cmd := &cobra.Command{
		Use:   "export DISK -o FILE",
		Short: "Download a VM disk (disks/<name>/export)",
		Long: `Download a disk of a Wukong VM, named <wukong>-<disk> as kubectl get disks
lists it, through KubeVirt's VirtualMachineExport: wukong-apiserver creates
the export, waits for it and streams the volume; the export token never
leaves the cluster.

The raw volume goes as parallel ranged chunks tied to one WukongFileTransfer,
each well inside kube-apiserver's request timeout and each checked by sha256;
FILE appears only when complete, and an interrupted export continues with
--resume. --format gzip (or -o -) streams over one WebSocket instead.`,
		Example: `  kubectl wukong export vm1-system -o disk.img
  kubectl wukong export --resume vm1-system -o disk.img
  kubectl wukong export vm1-system --format gzip -o disk.img.gz`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return e.run(cmd.Context(), args[0]) },
	}
	f := cmd.Flags()
	f.StringVarP(&e.output, "output", "o", "", "local file to write, or - for standard output")
	f.StringVar(&e.format, "format", "raw", "raw, or gzip (streamed, not resumable)")
	f.BoolVar(&e.resume, "resume", false, "continue an interrupted export into the same file, fetching only what is missing")
	_ = cmd.MarkFlagRequired("output")
	return cmd
}

func (e *exportOptions) run(ctx context.Context, disk string) error {
	if e.format != "raw" && e.format != "gzip" {
		return fmt.Errorf("--format %q: use raw or gzip", e.format)
	}
	c, err := e.diskClient(ctx, disk, "export")
	if err != nil {
		return err
	}
	progress := newProgress(e.ErrOut, e.quiet, disk)
	defer finish(progress)
	switch {
	case e.output == "-":
		_, err = c.ExportDiskStream(ctx, e.Out, e.format, progress)
	case e.format == "gzip":
		err = writeAtomically(e.output, func(w io.Writer) error {
			_, err := c.ExportDiskStream(ctx, w, e.format, progress)
			return err
		})
	default:
		_, err = c.ExportDisk(ctx, e.output, transfers.DownloadOptions{Resume: e.resume, Progress: progress})
	}
	return explain(err)
}

// writeAtomically fills a temporary file beside dest and renames it over
// dest only when fill succeeded.
func writeAtomically(dest string, fill func(io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Dir(dest), "."+filepath.Base(dest)+".wukong-*")
	if err != nil {
		return err
	}
	err = fill(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), dest)
	}
	if err != nil {
		_ = os.Remove(f.Name())
	}
	return err
}

type uploadOptions struct {
	*Options
	sha256     string
	noChecksum bool
}

var hexSHA256 = regexp.MustCompile(`^[0-9a-f]{64}$`)

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
of them.`,
		Example: `  kubectl wukong upload vm1-system ./image.qcow2
  xz -dc image.raw.xz | kubectl wukong upload vm1-system -`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error { return u.run(cmd.Context(), args[0], args[1]) },
	}
	f := cmd.Flags()
	f.StringVar(&u.sha256, "sha256", "", "the sha256 the image must have, in hex (default: computed from FILE)")
	f.BoolVar(&u.noChecksum, "no-checksum", false, "do not compute FILE's sha256 before sending")
	return cmd
}

func (u *uploadOptions) run(ctx context.Context, disk, file string) error {
	if u.sha256 != "" && !hexSHA256.MatchString(u.sha256) {
		return fmt.Errorf("--sha256 must be 64 lower-case hex digits")
	}
	var (
		r    io.Reader = u.In
		size int64     = -1
	)
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("%s is not a regular file", file)
		}
		if u.sha256 == "" && !u.noChecksum {
			h := sha256.New()
			if _, err := io.Copy(h, f); err != nil {
				return err
			}
			u.sha256 = hex.EncodeToString(h.Sum(nil))
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return err
			}
		}
		r, size = f, fi.Size()
	}
	c, err := u.diskClient(ctx, disk, "upload")
	if err != nil {
		return err
	}
	progress := newProgress(u.ErrOut, u.quiet, disk)
	defer finish(progress)
	_, err = c.UploadDisk(ctx, r, size, u.sha256, progress)
	return explain(err)
}
