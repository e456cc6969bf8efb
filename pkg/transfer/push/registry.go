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

package push

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/stream"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// A KubeVirt containerDisk is an image whose one layer holds the disk at
// disk/disk.img, readable by the qemu user (107).
const (
	containerDiskDir  = "disk/"
	containerDiskFile = "disk/disk.img"
	qemuID            = 107
)

// pushImage sends body to the registry as a containerDisk image tagged ref.
// The layer streams: go-containerregistry gzips and hashes it on its way up
// as a chunked blob upload, and the manifest, which needs the layer's
// digest, goes last. A push cut short leaves no tag behind.
func pushImage(ctx context.Context, ref string, rt http.RoundTripper, creds Credentials, body Body) (Result, error) {
	tag, err := name.ParseReference(ref)
	if err != nil {
		return Result{}, Permanent(fmt.Errorf("the registry target %q: %w", ref, err))
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeContainerDisk(pw, body)) }()
	// Closing the layer closes pr, which stops the writer above.
	layer := stream.NewLayer(pr, stream.WithCompressionLevel(gzip.BestSpeed), stream.WithMediaType(types.OCILayer))

	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	// The disk's architecture is not known here; KubeVirt reads the disk
	// whatever the image says. linux/amd64 is what `FROM scratch` images
	// built for containerDisks usually carry.
	base, err = mutate.ConfigFile(base, &v1.ConfigFile{OS: "linux", Architecture: "amd64", RootFS: v1.RootFS{Type: "layers"}})
	if err != nil {
		return Result{}, err
	}
	img, err := mutate.AppendLayers(base, layer)
	if err != nil {
		return Result{}, err
	}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithTransport(rt), remote.WithUserAgent("wukong-apiserver")}
	switch {
	case creds.Keychain != nil:
		opts = append(opts, remote.WithAuthFromKeychain(creds.Keychain))
	case creds.Username != "" || creds.Password != "":
		opts = append(opts, remote.WithAuth(&authn.Basic{Username: creds.Username, Password: creds.Password}))
	}
	if err := remote.Write(tag, img, opts...); err != nil {
		_ = pr.CloseWithError(err)
		return Result{}, err
	}
	digest, err := img.Digest()
	if err != nil {
		return Result{}, err
	}
	return Result{Digest: digest.String()}, nil
}

// writeContainerDisk writes the layer's tar: the disk directory and the
// disk image in it, with fixed times so that the same disk makes the same
// image.
func writeContainerDisk(w io.Writer, body Body) error {
	tw := tar.NewWriter(w)
	epoch := time.Unix(0, 0)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: containerDiskDir, Mode: 0o555, Uid: qemuID, Gid: qemuID, ModTime: epoch}); err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: containerDiskFile, Size: body.Size, Mode: 0o440, Uid: qemuID, Gid: qemuID, ModTime: epoch}); err != nil {
		return err
	}
	n, err := io.Copy(tw, body)
	if err != nil {
		return err
	}
	if n != body.Size {
		return fmt.Errorf("the disk ended after %d of %d bytes", n, body.Size)
	}
	return tw.Close()
}
