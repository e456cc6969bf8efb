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
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/minio/minio-go/v7"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
)

func TestDescribeHidesCredentials(t *testing.T) {
	for _, tc := range []struct {
		target v1alpha1.ExportTargetSpec
		want   string
	}{
		{v1alpha1.ExportTargetSpec{Type: "registry", URL: "registry.example.com/vms/ubuntu:custom"}, "registry oci registry.example.com/vms/ubuntu:custom"},
		{v1alpha1.ExportTargetSpec{Type: "s3", S3Config: &v1alpha1.S3Config{Endpoint: "https://s3.example.com", Bucket: "backups", Key: "vm/disk.img"}}, "s3 raw https://s3.example.com/backups/vm/disk.img"},
		{v1alpha1.ExportTargetSpec{Type: "http", URL: "https://user:secret@host.example/upload/disk.img?X-Amz-Signature=abc"}, "http raw https://host.example/upload/disk.img?X-Amz-Signature=REDACTED"},
		{v1alpha1.ExportTargetSpec{Type: "s3", S3Config: &v1alpha1.S3Config{Endpoint: "https://AKIA:secret@s3.example.com", Bucket: "b", Key: "k"}}, "s3 raw https://s3.example.com/b/k"},
	} {
		assert.Equal(t, tc.want, Describe(&tc.target))
	}
}

func TestIsPermanent(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&StatusError{Code: 503}, false},
		{&StatusError{Code: 429}, false},
		{&StatusError{Code: 408}, false},
		{&StatusError{Code: 403}, true},
		{fmt.Errorf("wrapped: %w", &transport.Error{StatusCode: 401}), true},
		{&transport.Error{StatusCode: 502}, false},
		{minio.ErrorResponse{StatusCode: 404, Code: "NoSuchBucket"}, true},
		{minio.ErrorResponse{StatusCode: 500}, false},
		{Permanent(errors.New("no such Secret")), true},
		{io.ErrUnexpectedEOF, false},
	} {
		assert.Equal(t, tc.want, IsPermanent(tc.err), "%v", tc.err)
	}
}

func TestContainerDiskLayout(t *testing.T) {
	disk := bytes.Repeat([]byte("wukong"), 1000)
	var out bytes.Buffer
	require.NoError(t, writeContainerDisk(&out, Body{Reader: bytes.NewReader(disk), Size: int64(len(disk))}))
	tr := tar.NewReader(&out)
	h, err := tr.Next()
	require.NoError(t, err)
	assert.Equal(t, "disk/", h.Name)
	h, err = tr.Next()
	require.NoError(t, err)
	assert.Equal(t, "disk/disk.img", h.Name)
	assert.Equal(t, 107, h.Uid)
	assert.Equal(t, 107, h.Gid)
	got, err := io.ReadAll(tr)
	require.NoError(t, err)
	assert.Equal(t, disk, got)
	_, err = tr.Next()
	assert.Equal(t, io.EOF, err)

	err = writeContainerDisk(io.Discard, Body{Reader: strings.NewReader("short"), Size: 10})
	assert.ErrorContains(t, err, "5 of 10 bytes", "a disk that ends early is not an image")
}
