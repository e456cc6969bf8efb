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

// Package cdi reaches CDI's upload path for a disk: its DataVolume must be an
// upload target CDI has made ready, a token comes from an UploadTokenRequest
// (CDI's aggregated API), and the upload proxy's address and CA from the
// CDIConfig, as virtctl finds them, unless flags say otherwise. Streaming the
// bytes is the caller's; the token never leaves the server.
package cdi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	cdiclient "kubevirt.io/client-go/containerizeddataimporter/typed/core/v1beta1"
	uploadclient "kubevirt.io/client-go/containerizeddataimporter/typed/upload/v1beta1"
	cdiv1 "kubevirt.io/containerized-data-importer-api/pkg/apis/core/v1beta1"
	uploadv1beta1 "kubevirt.io/containerized-data-importer-api/pkg/apis/upload/v1beta1"
)

// The upload proxy's path: sync, answered once the upload server has written
// the volume, so a 200 means the disk holds the bytes. There is no
// upload-archive path on the proxy (CDI's common.ProxyPaths): it sends the
// upload of a PVC of contentType archive to the upload server's itself.
const uploadPath = "/v1beta1/upload"

// ConfigName is the CDIConfig CDI keeps its cluster-wide settings in.
const ConfigName = "config"

// Uploader finds where and with which token a DataVolume takes an upload.
type Uploader struct {
	DataVolumes cdiclient.DataVolumesGetter
	Configs     cdiclient.CDIConfigsGetter
	Tokens      uploadclient.UploadTokenRequestsGetter
	// ProxyURL and ProxyCA, when set, override the CDIConfig's
	// status.uploadProxyURL and status.uploadProxyCA (--cdi-upload-proxy-*).
	ProxyURL string
	ProxyCA  []byte

	mu      sync.Mutex
	clients map[string]*http.Client // by CA, so connections are reused
}

// Target is where one upload goes.
type Target struct {
	URL   string
	Token string
	// Archive says the body is a tar CDI unpacks into a filesystem volume.
	Archive bool
	Client  *http.Client
}

// NotReadyError says CDI is still preparing the upload server (the
// DataVolume is not UploadReady yet: Pending, UploadScheduled, ...): ask
// again later.
type NotReadyError struct {
	DataVolume, Phase string
}

func (e *NotReadyError) Error() string {
	if e.Phase == "" {
		return fmt.Sprintf("the DataVolume %s does not exist yet", e.DataVolume)
	}
	return fmt.Sprintf("the DataVolume %s is %s, not UploadReady yet: CDI is starting its upload server", e.DataVolume, e.Phase)
}

// NotUploadableError says the DataVolume takes no upload, and will not
// without the user: it imports its content, already holds an upload
// (Succeeded) or failed. Phase is its phase.
type NotUploadableError struct {
	DataVolume, Phase, Reason string
}

func (e *NotUploadableError) Error() string { return e.Reason }

// Target returns where the upload to DataVolume claim goes. A *NotReadyError
// means CDI's upload server is not up yet; a *NotUploadableError that the
// disk takes no upload.
func (u *Uploader) Target(ctx context.Context, namespace, claim string) (*Target, error) {
	dv, err := u.DataVolumes.DataVolumes(namespace).Get(ctx, claim, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, &NotReadyError{DataVolume: claim}
	}
	if err != nil {
		return nil, fmt.Errorf("reading the DataVolume %s: %w", claim, err)
	}
	phase := string(dv.Status.Phase)
	if dv.Spec.Source == nil || dv.Spec.Source.Upload == nil {
		return nil, &NotUploadableError{DataVolume: claim, Phase: phase, Reason: fmt.Sprintf("the DataVolume %s (phase %q) imports its content and takes no upload: a disk takes uploads when its importSource has type upload", claim, phase)}
	}
	switch dv.Status.Phase {
	case cdiv1.UploadReady:
	case cdiv1.Succeeded:
		return nil, &NotUploadableError{DataVolume: claim, Phase: phase, Reason: fmt.Sprintf("the DataVolume %s is Succeeded: it already holds an upload, and CDI writes a volume once (its upload server is gone); delete and recreate the disk to upload again", claim)}
	case cdiv1.Failed:
		why := ""
		for _, c := range dv.Status.Conditions {
			if c.Type == cdiv1.DataVolumeRunning && c.Message != "" {
				why = ": " + c.Message
			}
		}
		return nil, &NotUploadableError{DataVolume: claim, Phase: phase, Reason: fmt.Sprintf("the DataVolume %s is Failed%s; delete and recreate the disk to upload again", claim, why)}
	default:
		return nil, &NotReadyError{DataVolume: claim, Phase: string(dv.Status.Phase)}
	}
	base, ca, err := u.proxy(ctx)
	if err != nil {
		return nil, err
	}
	tr, err := u.Tokens.UploadTokenRequests(namespace).Create(ctx, &uploadv1beta1.UploadTokenRequest{
		ObjectMeta: metav1.ObjectMeta{Name: "wukong-" + claim, Namespace: namespace},
		Spec:       uploadv1beta1.UploadTokenRequestSpec{PvcName: claim},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("asking CDI for an upload token (UploadTokenRequest): %w", err)
	}
	if tr.Status.Token == "" {
		return nil, fmt.Errorf("CDI answered the UploadTokenRequest for %s without a token", claim)
	}
	client, err := u.client(ca)
	if err != nil {
		return nil, err
	}
	return &Target{URL: base + uploadPath, Token: tr.Status.Token, Client: client, Archive: dv.Spec.ContentType == cdiv1.DataVolumeArchive}, nil
}

// proxy returns the upload proxy's base URL and CA, from the flags or the CDIConfig.
func (u *Uploader) proxy(ctx context.Context) (string, []byte, error) {
	base, ca := u.ProxyURL, u.ProxyCA
	if base == "" || len(ca) == 0 {
		cfg, err := u.Configs.CDIConfigs().Get(ctx, ConfigName, metav1.GetOptions{})
		if err != nil && base == "" {
			return "", nil, fmt.Errorf("finding CDI's upload proxy: reading CDIConfig %s: %w (or set --cdi-upload-proxy-url)", ConfigName, err)
		}
		if err == nil {
			if base == "" && cfg.Status.UploadProxyURL != nil {
				base = *cfg.Status.UploadProxyURL
			}
			if len(ca) == 0 && cfg.Status.UploadProxyCA != nil {
				ca = []byte(*cfg.Status.UploadProxyCA)
			}
		}
	}
	if base == "" {
		return "", nil, fmt.Errorf("CDIConfig %s has no status.uploadProxyURL (set --cdi-upload-proxy-url)", ConfigName)
	}
	if !strings.Contains(base, "://") {
		base = "https://" + base // CDI publishes a host name
	}
	return strings.TrimSuffix(base, "/"), ca, nil
}

func (u *Uploader) client(ca []byte) (*http.Client, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if c, ok := u.clients[string(ca)]; ok {
		return c, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if len(ca) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(ca) {
			return nil, fmt.Errorf("the upload proxy's CA is not PEM")
		}
		tc.RootCAs = pool
	}
	// No response timeout: a sync upload is answered when the volume is written.
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: tc, Proxy: http.ProxyFromEnvironment, DisableCompression: true, IdleConnTimeout: 90 * time.Second}}
	if u.clients == nil {
		u.clients = map[string]*http.Client{}
	}
	u.clients[string(ca)] = c
	return c, nil
}
