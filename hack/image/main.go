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

// Command image assembles wukong-apiserver's multi-arch OCI image from
// binaries already built, with go-containerregistry and no container daemon
// and no base image: each platform's image is one layer holding the static
// binaries (wukong-apiserver, and wukong-agent for the helper pods of
// method pvc and for guests to fetch), the Mozilla CA roots (from golang.org/x/crypto/x509roots, pinned
// by go.sum, so they are the same on every machine), /etc/passwd and
// /etc/group naming the non-root user it runs as, and an empty /tmp.
//
// Everything that could vary between two builds of the same source is
// fixed: file times are the commit time (SOURCE_DATE_EPOCH), owners are
// root, entries are sorted, and gzip writes no name or time. So the same
// source gives the same digest (`make image` twice; the release test checks).
//
// It writes an OCI image layout (--oci-layout) and/or pushes the index
// (--push REF), and prints the index digest.
package main

import (
	"archive/tar"
	"bytes"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// The user the image runs as: not root, and the uid distroless and
// chainguard images use for it, so PodSecurity "restricted" and
// runAsNonRoot policies accept it without a runAsUser.
const (
	uid        = 65532
	entrypoint = "/usr/local/bin/wukong-apiserver"
	agentPath  = "/usr/local/bin/wukong-agent"
)

type binaries map[string]string

func (b binaries) String() string { return fmt.Sprint(map[string]string(b)) }

func (b binaries) Set(v string) error {
	platform, path, ok := strings.Cut(v, "=")
	if !ok || !strings.Contains(platform, "/") {
		return fmt.Errorf("want os/arch=path, got %q", v)
	}
	b[platform] = path
	return nil
}

func main() {
	bins, agents := binaries{}, binaries{}
	flag.Var(bins, "binary", "os/arch=path of a static wukong-apiserver; repeat for each platform")
	flag.Var(agents, "agent", "os/arch=path of a static wukong-agent; repeat for each platform of --binary")
	ociLayout := flag.String("oci-layout", "", "write the image index as an OCI image layout into this directory (replaced)")
	push := flag.String("push", "", "push the image index to this reference (e.g. registry.example.com/wukong-apiserver:v0.1.0)")
	insecure := flag.Bool("insecure", false, "allow plain HTTP to the registry of --push (a registry on loopback in tests)")
	version := flag.String("version", "", "the version, as an image label")
	revision := flag.String("revision", "", "the commit, as an image label")
	agentDisk := flag.Bool("agent-disk", false, "build the wukong-agent-disk containerDisk from the --agent binaries instead (agentdisk.go)")
	flag.Parse()
	if *agentDisk {
		os.Exit(mainAgentDisk(agents, *ociLayout, *push, *insecure, *version, *revision))
	}
	if len(bins) == 0 || (*ociLayout == "" && *push == "") {
		fmt.Fprintln(os.Stderr, "usage: image --binary linux/amd64=PATH --agent linux/amd64=PATH [--binary ... --agent ...] (--oci-layout DIR | --push REF)")
		os.Exit(2)
	}
	created, err := sourceDateEpoch()
	if err == nil {
		var idx v1.ImageIndex
		if idx, err = build(bins, agents, created, map[string]string{
			"org.opencontainers.image.source":   "https://github.com/novasphere/wukong",
			"org.opencontainers.image.version":  *version,
			"org.opencontainers.image.revision": *revision,
			"org.opencontainers.image.licenses": "Apache-2.0",
			"org.opencontainers.image.title":    "wukong-apiserver",
		}); err == nil {
			err = write(idx, *ociLayout, *push, *insecure)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

// mainAgentDisk builds, writes and pushes the agent's containerDisk.
func mainAgentDisk(agents binaries, ociLayout, push string, insecure bool, version, revision string) int {
	if len(agents) == 0 || (ociLayout == "" && push == "") {
		fmt.Fprintln(os.Stderr, "usage: image --agent-disk --agent linux/amd64=PATH [--agent ...] (--oci-layout DIR | --push REF)")
		return 2
	}
	created, err := sourceDateEpoch()
	if err == nil {
		var idx v1.ImageIndex
		var cleanup func()
		if idx, cleanup, err = buildAgentDisk(agents, created, map[string]string{
			"org.opencontainers.image.source":   "https://github.com/novasphere/wukong",
			"org.opencontainers.image.version":  version,
			"org.opencontainers.image.revision": revision,
			"org.opencontainers.image.licenses": "Apache-2.0",
			"org.opencontainers.image.title":    "wukong-agent-disk",
		}); err == nil {
			defer cleanup()
			err = write(idx, ociLayout, push, insecure)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		return 1
	}
	return 0
}

// sourceDateEpoch is the reproducible-builds.org convention for "the time
// of the source": the Makefile sets it to the commit time.
func sourceDateEpoch() (time.Time, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q: %w", s, err)
	}
	return time.Unix(n, 0).UTC(), nil
}

func build(bins, agents binaries, created time.Time, labels map[string]string) (v1.ImageIndex, error) {
	platforms := make([]string, 0, len(bins))
	for p := range bins {
		platforms = append(platforms, p)
	}
	sort.Strings(platforms)
	base, err := baseLayer(created)
	if err != nil {
		return nil, err
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range platforms {
		osName, arch, _ := strings.Cut(p, "/")
		if agents[p] == "" {
			return nil, fmt.Errorf("no --agent for %s: the image ships wukong-agent beside the server", p)
		}
		// Sorted by name, as every layer's entries are.
		binLayer, err := layer([]file{
			{name: strings.TrimPrefix(agentPath, "/"), mode: 0o755, path: agents[p]},
			{name: strings.TrimPrefix(entrypoint, "/"), mode: 0o755, path: bins[p]},
		}, created)
		if err != nil {
			return nil, err
		}
		img, err := mutate.ConfigFile(mutate.MediaType(empty.Image, types.OCIManifestSchema1), &v1.ConfigFile{
			Architecture: arch,
			OS:           osName,
			Created:      v1.Time{Time: created},
			Config: v1.Config{
				Entrypoint: []string{entrypoint},
				User:       fmt.Sprintf("%d:%d", uid, uid),
				WorkingDir: "/",
				Env:        []string{"PATH=/usr/local/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"},
				Labels:     labels,
			},
		})
		if err != nil {
			return nil, err
		}
		img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
		for _, l := range []v1.Layer{base, binLayer} {
			if img, err = mutate.Append(img, mutate.Addendum{Layer: l, MediaType: types.OCILayer,
				History: v1.History{Created: v1.Time{Time: created}, CreatedBy: "hack/image"}}); err != nil {
				return nil, err
			}
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{
			MediaType: types.OCIManifestSchema1,
			Platform:  &v1.Platform{OS: osName, Architecture: arch},
		}})
	}
	return idx, nil
}

// baseLayer is what every platform shares: users, CA roots, /tmp.
func baseLayer(created time.Time) (v1.Layer, error) {
	var roots bytes.Buffer
	for r := range bundle.Roots() {
		// A PEM file cannot carry NSS's extra constraints (distrust after
		// a date); such roots are left out rather than trusted unbounded.
		if r.Constraint != nil {
			continue
		}
		if err := pem.Encode(&roots, &pem.Block{Type: "CERTIFICATE", Bytes: r.Certificate}); err != nil {
			return nil, err
		}
	}
	return layer([]file{
		{name: "etc/", dir: true, mode: 0o755},
		{name: "etc/group", mode: 0o644, data: fmt.Appendf(nil, "root:x:0:\nnonroot:x:%d:\n", uid)},
		{name: "etc/passwd", mode: 0o644, data: fmt.Appendf(nil, "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", uid, uid)},
		{name: "etc/ssl/", dir: true, mode: 0o755},
		{name: "etc/ssl/certs/", dir: true, mode: 0o755},
		{name: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, data: roots.Bytes()},
		{name: "home/", dir: true, mode: 0o755},
		{name: "home/nonroot/", dir: true, mode: 0o700, uid: uid},
		{name: "tmp/", dir: true, mode: 0o1777},
		{name: "usr/", dir: true, mode: 0o755},
		{name: "usr/local/", dir: true, mode: 0o755},
		{name: "usr/local/bin/", dir: true, mode: 0o755},
	}, created)
}

type file struct {
	name string
	dir  bool
	mode int64
	uid  int
	data []byte
	path string // read from here instead of data: the binary is streamed
}

// layer is files, in order, as one tar with fixed times and owners. The tar
// is written anew each time go-containerregistry opens the layer (for its
// digests and again to write it), straight from the files, so a binary of
// ~90 MB is never held in memory.
func layer(files []file, created time.Time) (v1.Layer, error) {
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(writeTar(pw, files, created)) }()
		return pr, nil
	}, tarball.WithMediaType(types.OCILayer))
}

func writeTar(w io.Writer, files []file, created time.Time) error {
	tw := tar.NewWriter(w)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, Uid: f.uid, Gid: f.uid, ModTime: created, Format: tar.FormatPAX}
		var body io.Reader = bytes.NewReader(f.data)
		switch {
		case f.dir:
			h.Typeflag = tar.TypeDir
		case f.path != "":
			in, err := os.Open(f.path)
			if err != nil {
				return err
			}
			defer in.Close()
			st, err := in.Stat()
			if err != nil {
				return err
			}
			h.Typeflag, h.Size, body = tar.TypeReg, st.Size(), in
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := io.Copy(tw, body); err != nil {
			return err
		}
	}
	return tw.Close()
}

func write(idx v1.ImageIndex, dir, ref string, insecure bool) error {
	if dir != "" {
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
		// index.json names the image index, so the digest printed below
		// is a blob of the layout, as in a registry.
		p, err := layout.Write(dir, empty.Index)
		if err != nil {
			return err
		}
		if err := p.AppendIndex(idx); err != nil {
			return err
		}
	}
	if ref != "" {
		var opts []name.Option
		if insecure {
			opts = append(opts, name.Insecure)
		}
		r, err := name.ParseReference(ref, opts...)
		if err != nil {
			return err
		}
		if err := remote.WriteIndex(r, idx, remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
			return err
		}
	}
	d, err := idx.Digest()
	if err != nil {
		return err
	}
	fmt.Println(d)
	return nil
}
