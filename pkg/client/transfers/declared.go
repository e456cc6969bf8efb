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

package transfers

import (
	"context"
	"errors"
	"fmt"
	"os"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
)

// ErrDeclaredDeleted: the declared transfer a client ran was deleted while
// it ran, which cancels it.
var ErrDeclaredDeleted = errors.New("the WukongFileTransfer was deleted while it ran, which cancels it")

// RunDeclared performs the declared upload rec (spec.localPath) from the
// local file src, bound to rec: its chunks and commit name rec, so rec is
// the record that ends Succeeded or Failed. A record that does not say
// its size and sha256 yet is given those of src first (a one-time update
// the server allows on a declared record nothing ran); one that says
// others refuses a different file.
func (c *Client) RunDeclared(ctx context.Context, src string, rec *v1alpha1.WukongFileTransfer, opts UploadOptions) (*Result, error) {
	if opts.Progress == nil {
		opts.Progress = noProgress{}
	}
	f, err := os.Open(src)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", src)
	}
	size := fi.Size()
	states, err := hashFile(f, size, c.ChunkSize)
	if err != nil {
		return nil, err
	}
	sum := states.sum
	if rec.Spec.ExpectedSize == nil {
		if rec, err = c.fill(ctx, rec.Name, size, sum); err != nil {
			if apierrors.IsNotFound(err) {
				return nil, fmt.Errorf("transfer %s: %w", rec.Name, ErrDeclaredDeleted)
			}
			return nil, err
		}
	}
	switch {
	case *rec.Spec.ExpectedSize != size:
		return nil, fmt.Errorf("transfer %s expects %d bytes, %s has %d", rec.Name, *rec.Spec.ExpectedSize, src, size)
	case rec.Spec.ExpectedSHA256 != "" && rec.Spec.ExpectedSHA256 != sum:
		return nil, fmt.Errorf("transfer %s expects sha256 %s, %s has %s", rec.Name, rec.Spec.ExpectedSHA256, src, sum)
	}
	res, err := c.sendChunks(ctx, f, src, states, rec.Spec.RemotePath, rec, opts)
	if err != nil {
		if _, gerr := c.records.Get(ctx, rec.Name, metav1.GetOptions{}); apierrors.IsNotFound(gerr) {
			return nil, fmt.Errorf("transfer %s: %w", rec.Name, ErrDeclaredDeleted)
		}
		return nil, err
	}
	return res, nil
}

// fill gives the declared record name its expected size and sha256.
func (c *Client) fill(ctx context.Context, name string, size int64, sum string) (*v1alpha1.WukongFileTransfer, error) {
	var out *v1alpha1.WukongFileTransfer
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		rec, err := c.records.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if rec.Spec.ExpectedSize != nil {
			out = rec
			return nil
		}
		rec.Spec.ExpectedSize = ptr.To(size)
		if rec.Spec.ExpectedSHA256 == "" {
			rec.Spec.ExpectedSHA256 = sum
		}
		out, err = c.records.Update(ctx, rec, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("giving transfer %s the size and sha256 of the local file: %w", name, err)
	}
	return out, nil
}
