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
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
)

// partSize bounds the memory of an S3 push: minio-go reads one part at a
// time into a buffer of this size. 16 MiB parts reach S3's 10,000-part limit
// at about 156 GiB; minio-go raises the part size for larger disks.
const partSize = 16 << 20

// putObject sends body to the object s3 names, as a multipart upload. S3
// shows an object only once its upload completes, and minio-go aborts an
// upload that fails, so a cut push leaves no object behind.
func putObject(ctx context.Context, s3 *v1alpha1.S3Config, rt http.RoundTripper, creds Credentials, body Body) error {
	if s3 == nil {
		return Permanent(fmt.Errorf("an s3 target needs s3Config"))
	}
	u, err := url.Parse(s3.Endpoint)
	if err != nil || u.Host == "" {
		return Permanent(fmt.Errorf("s3Config.endpoint %q is not a URL with a host", s3.Endpoint))
	}
	client, err := minio.New(u.Host, &minio.Options{
		Creds:     credentials.NewStaticV4(creds.Username, creds.Password, ""),
		Secure:    u.Scheme == "https",
		Region:    s3.Region,
		Transport: rt,
	})
	if err != nil {
		return Permanent(err)
	}
	_, err = client.PutObject(ctx, s3.Bucket, s3.Key, body, body.Size, minio.PutObjectOptions{
		ContentType: "application/octet-stream",
		PartSize:    partSize,
		NumThreads:  1,
	})
	return err
}
