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

// Package vm tests the controller that realises Wukongs as KubeVirt
// VirtualMachines with CDI DataVolumes, through kube-apiserver. KubeVirt and
// CDI cannot run here: their CRDs are installed and stand-in controllers
// (test/integration/standin) play virt-controller, CDI's importer and CDI's
// upload path; http sources are really downloaded from a local TLS server.
package vm

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/novasphere/wukong/test/integration/framework"
	"github.com/novasphere/wukong/test/integration/standin"
)

var (
	cp *framework.ControlPlane
	// images serves the disk images http sources import, over TLS.
	images *httptest.Server
	// image is what images serves at /disk.img, and imageSHA256 its sha256.
	image       []byte
	imageSHA256 string
	// uploads plays CDI's upload path: UploadTokenRequest, the upload proxy
	// and upload DataVolumes.
	uploads *standin.Uploads
	// virt runs the KubeVirt, CDI and CSI stand-ins.
	virt *standin.Controllers
)

func TestMain(m *testing.M) {
	image = make([]byte, 8<<20)
	r := rand.NewChaCha8([32]byte{7})
	_, _ = r.Read(image)
	sum := sha256.Sum256(image)
	imageSHA256 = hex.EncodeToString(sum[:])
	mux := http.NewServeMux()
	mux.HandleFunc("/disk.img", func(w http.ResponseWriter, req *http.Request) {
		http.ServeContent(w, req, "disk.img", time.Time{}, bytes.NewReader(image))
	})
	mux.HandleFunc("/private/disk.img", func(w http.ResponseWriter, req *http.Request) {
		if u, p, ok := req.BasicAuth(); !ok || u != "importer" || p != "s3cr3t" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		http.ServeContent(w, req, "disk.img", time.Time{}, bytes.NewReader(image))
	})
	images = httptest.NewTLSServer(mux)

	code := framework.RunTestMain(m, framework.Options{
		Controller: true,
		BeforeWukongAPIServer: func(ctx context.Context, cp *framework.ControlPlane) (err error) {
			uploads, err = startStandIns(ctx, cp)
			return err
		},
	}, &cp)
	if virt != nil {
		_ = virt.Close()
	}
	images.Close()
	os.Exit(code)
}

// startStandIns installs the KubeVirt and CDI CRDs in c and starts the
// stand-in controllers and CDI's upload path, for the life of the tests.
func startStandIns(ctx context.Context, c *framework.ControlPlane) (*standin.Uploads, error) {
	if err := standin.InstallKubeVirtCRDs(ctx, c); err != nil {
		return nil, err
	}
	var err error
	virt, err = standin.StartControllers(context.Background(), c.Admin.Config)
	if err != nil {
		return nil, err
	}
	virt.Address = guestAddress // runstrategy_test.go
	return standin.StartUploads(context.Background(), c)
}

// imagesCA is the PEM of the images server's certificate, for a certConfigMap.
func imagesCA() string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: images.Certificate().Raw}))
}
