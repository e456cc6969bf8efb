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

package framework

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// EnvVersityGWBin names the versitygw binary to run instead of
// _output/bin/versitygw (built by hack/tools/build.sh).
const EnvVersityGWBin = "VERSITYGW_BIN"

// S3 is a real S3 server for a test: versitygw over a posix directory, on
// loopback, plain HTTP.
type S3 struct {
	// Endpoint is http://127.0.0.1:PORT.
	Endpoint, AccessKey, SecretKey string
	// Client is a minio-go client of it, as the root user.
	Client *minio.Client
}

// StartS3 starts versitygw for the test and stops it at the end.
func StartS3(t testing.TB) *S3 {
	t.Helper()
	bin := toolBinary(t, EnvVersityGWBin, "versitygw")
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s := &S3{Endpoint: fmt.Sprintf("http://127.0.0.1:%d", port), AccessKey: "wukongtest", SecretKey: "wukongtestsecret"}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	p, err := startProcess("versitygw", filepath.Join(dir, "versitygw.log"), bin,
		"--port", fmt.Sprintf("127.0.0.1:%d", port), "--access", s.AccessKey, "--secret", s.SecretKey, "posix", filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.stop)
	s.Client, err = minio.New(fmt.Sprintf("127.0.0.1:%d", port), &minio.Options{Creds: credentials.NewStaticV4(s.AccessKey, s.SecretKey, "")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.waitReady(ctx, "S3", func(ctx context.Context) error {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err != nil {
			return err
		}
		c.Close()
		_, err = s.Client.ListBuckets(ctx)
		return err
	}); err != nil {
		t.Fatalf("versitygw: %v", err)
	}
	return s
}

// toolBinary is $env, or name in _output/bin, where hack/tools/build.sh
// (make tools) puts it.
func toolBinary(t testing.TB, env, name string) string {
	t.Helper()
	bin := os.Getenv(env)
	if bin == "" {
		root, err := RepoRoot()
		if err != nil {
			t.Fatal(err)
		}
		bin = filepath.Join(root, "_output", "bin", name)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s: %v (make tools builds it)", name, err)
	}
	return bin
}
