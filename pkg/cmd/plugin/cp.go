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
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/novasphere/wukong/pkg/client/tarball"
	"github.com/novasphere/wukong/pkg/client/transfers"
)

type cpOptions struct {
	*Options
	resume        bool
	noClobber     bool
	createParents bool
	mode          string
	gzip          bool
}

func newCpCommand(o *Options) *cobra.Command {
	c := &cpOptions{Options: o}
	cmd := &cobra.Command{
		Use:   "cp SRC DEST",
		Short: "Copy files and directories into and out of a VM",
		Long: `Copy a file or a directory into or out of a running Wukong VM. One side is
WUKONG:/path or NAMESPACE/WUKONG:/path, the other a local path, or - for
standard input or output.

Files larger than one chunk go as parallel chunks tied to one
WukongFileTransfer, each well inside kube-apiserver's request timeout and each
checked by sha256 on arrival; the file appears under its name only when
complete. If a copy is interrupted, run the same command with --resume: only
what is missing is sent. Directories and standard input/output stream as one
WebSocket, which kube-apiserver does not time out.`,
		Example: `  kubectl wukong cp ./app.tar vm1:/opt/app.tar
  kubectl wukong cp vm1:/var/log ./logs
  kubectl wukong cp --resume ./disk.img vm1:/data/disk.img
  tar c . | kubectl wukong cp - vm1:/tmp/src.tar`,
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: o.completeRemote(true),
		RunE:              func(cmd *cobra.Command, args []string) error { return c.run(cmd.Context(), args[0], args[1]) },
	}
	f := cmd.Flags()
	f.BoolVar(&c.resume, "resume", false, "continue an interrupted copy of the same file to the same place, sending only what is missing")
	f.BoolVar(&c.noClobber, "no-clobber", false, "do not replace a file that exists in the VM")
	f.BoolVarP(&c.createParents, "create-parents", "p", false, "create missing directories above the target in the VM")
	f.StringVar(&c.mode, "mode", "", "mode of the file created in the VM, in octal (default: keep the replaced file's, or 0644)")
	f.BoolVarP(&c.gzip, "gzip", "z", false, "compress directories on the way (helps on slow links, costs CPU)")
	return cmd
}

func (c *cpOptions) run(ctx context.Context, src, dst string) error {
	rsrc, srcRemote := parseRemote(src)
	rdst, dstRemote := parseRemote(dst)
	switch {
	case srcRemote && dstRemote:
		return fmt.Errorf("one of SRC and DEST must be local: copy through this machine in two steps")
	case !srcRemote && !dstRemote:
		return fmt.Errorf("one of SRC and DEST must be in a VM (WUKONG:/path)")
	case srcRemote:
		if _, err := mustRemote(src); err != nil {
			return err
		}
		return c.download(ctx, rsrc, dst)
	default:
		if _, err := mustRemote(dst); err != nil {
			return err
		}
		return c.upload(ctx, src, rdst)
	}
}

func (c *cpOptions) upload(ctx context.Context, src string, dst remote) error {
	fc, err := c.client(dst)
	if err != nil {
		return err
	}
	progress := newProgress(c.ErrOut, c.quiet, path.Base(dst.path))
	defer finish(progress)
	stream := transfers.StreamOptions{Upload: "replace", CreateParents: c.createParents, Mode: c.mode, Progress: progress}
	if c.noClobber {
		stream.Upload = "create"
	}
	if src == "-" {
		_, err := fc.StreamUpload(ctx, dst.path, c.In, stream)
		return explain(err)
	}
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	target := dst.path
	// As cp does: into an existing directory, under the source's name.
	if strings.HasSuffix(target, "/") {
		target = path.Join(target, filepath.Base(filepath.Clean(src)))
	} else if info, err := fc.Stat(ctx, target); err == nil && info.Type == "directory" {
		target = path.Join(target, filepath.Base(filepath.Clean(src)))
	}
	if fi.IsDir() {
		// The tar's top directory is named after the target, extracted in
		// the target's parent: the server's layout (see pkg/transfer/archive).
		stream.Archive, stream.Gzip, stream.CreateParents = true, c.gzip, true
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(tarball.Write(src, path.Base(target), pw, c.gzip)) }()
		_, err := fc.StreamUpload(ctx, path.Dir(target), pr, stream)
		pr.Close()
		return explain(err)
	}
	_, err = fc.UploadFile(ctx, src, target, transfers.UploadOptions{
		Resume: c.resume, NoClobber: c.noClobber, CreateParents: c.createParents, Mode: c.mode, Progress: progress,
	})
	return explain(err)
}

func (c *cpOptions) download(ctx context.Context, src remote, dst string) error {
	fc, err := c.client(src)
	if err != nil {
		return err
	}
	progress := newProgress(c.ErrOut, c.quiet, path.Base(src.path))
	defer finish(progress)
	info, err := fc.Stat(ctx, src.path)
	if err != nil {
		return explain(err)
	}
	dir := info.Type == "directory"
	if dst == "-" {
		_, err := fc.StreamDownload(ctx, src.path, c.Out, transfers.StreamOptions{Archive: dir, Gzip: dir && c.gzip, Progress: progress})
		return explain(err)
	}
	target := dst
	if fi, err := os.Stat(dst); err == nil && fi.IsDir() {
		target = filepath.Join(dst, path.Base(src.path))
	}
	if dir {
		pr, pw := io.Pipe()
		done := make(chan error, 1)
		go func() {
			// The server names entries after the directory (log/...), but
			// "/" has no top directory.
			strip := 1
			if path.Clean(src.path) == "/" {
				strip = 0
			}
			err := tarball.Extract(pr, target, c.gzip, strip)
			pr.CloseWithError(err)
			done <- err
		}()
		_, err := fc.StreamDownload(ctx, src.path, pw, transfers.StreamOptions{Archive: true, Gzip: c.gzip, Progress: progress})
		pw.CloseWithError(err)
		if xerr := <-done; err == nil {
			err = xerr
		}
		return explain(err)
	}
	if info.Type != "file" {
		return fmt.Errorf("%s is a %s: cp copies files and directories", src, info.Type)
	}
	_, err = fc.DownloadFile(ctx, src.path, info, target, transfers.DownloadOptions{Resume: c.resume, Progress: progress})
	return explain(err)
}

// explain puts the server's Status message first, as kubectl prints errors.
func explain(err error) error {
	if err == nil {
		return nil
	}
	var st *apierrors.StatusError
	if errors.As(err, &st) && st.ErrStatus.Message != "" && st.Error() == err.Error() {
		return fmt.Errorf("%s", st.ErrStatus.Message)
	}
	return err
}
