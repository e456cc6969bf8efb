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

// Package export reaches a disk's bytes through KubeVirt's
// VirtualMachineExport: it creates (or reuses) the export of the disk's PVC,
// with a token Secret of its own, and says where the export server serves
// the volume, with which token and which CA. Streaming the bytes is the
// caller's; the token never leaves the server.
package export

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net/http"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/utils/ptr"
	exportv1beta1 "kubevirt.io/api/export/v1beta1"
	exportclient "kubevirt.io/client-go/kubevirt/typed/export/v1beta1"
)

// TokenHeader is how KubeVirt's export server takes the token.
const TokenHeader = "x-kubevirt-export-token"

// Exporter finds or makes the export of a PVC.
type Exporter struct {
	Exports exportclient.ExportV1beta1Interface
	Secrets corev1client.SecretsGetter
	// TTL lets KubeVirt delete an export nobody uses any more.
	TTL time.Duration

	mu      sync.Mutex
	clients map[string]*http.Client // by export server certificate, so connections are reused
}

// Source is where a volume is served.
type Source struct {
	URL    string
	Token  string
	Client *http.Client
	// Export is the VirtualMachineExport's name.
	Export string
}

// Do asks the export server for the volume with method (GET or HEAD) and,
// if rng is set, a Range header. The token travels in a header, never in the
// URL, so an error that names the URL gives nothing away. The caller reads
// the status.
func (s *Source) Do(ctx context.Context, method, rng string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, s.URL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set(TokenHeader, s.Token)
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	return s.Client.Do(req)
}

// NotReadyError says the export is being prepared: ask again later.
type NotReadyError struct {
	Export, Phase string
}

func (e *NotReadyError) Error() string {
	return fmt.Sprintf("the VirtualMachineExport %s is %s, not Ready yet", e.Export, e.Phase)
}

// Name is the VirtualMachineExport of a PVC.
func Name(claim string) string { return "wukong-" + claim }

// Source returns where the volume of PVC claim is served in format (raw or
// gzip), creating the export when there is none. A *NotReadyError means
// the export server is not up yet.
func (e *Exporter) Source(ctx context.Context, namespace, claim string, format exportv1beta1.ExportVolumeFormat) (*Source, error) {
	name := Name(claim)
	vme, err := e.Exports.VirtualMachineExports(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		vme, err = e.create(ctx, namespace, claim)
	}
	if err != nil {
		return nil, err
	}
	st := vme.Status
	if st == nil || st.Phase != exportv1beta1.Ready || st.Links == nil || st.Links.Internal == nil {
		phase := "Pending"
		if st != nil && st.Phase != "" {
			phase = string(st.Phase)
		}
		return nil, &NotReadyError{Export: name, Phase: phase}
	}
	var url string
	for _, v := range st.Links.Internal.Volumes {
		if v.Name != claim {
			continue
		}
		for _, f := range v.Formats {
			if f.Format == format {
				url = f.Url
			}
		}
	}
	if url == "" {
		return nil, fmt.Errorf("the VirtualMachineExport %s offers no %s format for volume %s", name, format, claim)
	}
	secretName := ptr.Deref(vme.Spec.TokenSecretRef, "")
	if st.TokenSecretRef != nil {
		secretName = *st.TokenSecretRef
	}
	s, err := e.Secrets.Secrets(namespace).Get(ctx, secretName, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading the export token Secret %s: %w", secretName, err)
	}
	client, err := e.client(st.Links.Internal.Cert)
	if err != nil {
		return nil, fmt.Errorf("the VirtualMachineExport %s: %w", name, err)
	}
	return &Source{URL: url, Token: string(s.Data["token"]), Client: client, Export: name}, nil
}

// client returns the HTTP client that trusts an export server's
// certificate, one per certificate: every chunk of an export reuses its
// connections, and idle ones are closed.
func (e *Exporter) client(certPEM string) (*http.Client, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c, ok := e.clients[certPEM]; ok {
		return c, nil
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(certPEM)) {
		return nil, fmt.Errorf("no usable certificate in status.links.internal.cert")
	}
	c := &http.Client{Transport: &http.Transport{
		TLSClientConfig:       &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		ResponseHeaderTimeout: time.Minute,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   8,
		DisableCompression:    true, // gzip is a format here, not a transport detail
	}}
	if e.clients == nil {
		e.clients = map[string]*http.Client{}
	}
	e.clients[certPEM] = c
	return c, nil
}

// create makes the export of claim and its token Secret, owned by it so
// that KubeVirt's TTL clean-up takes both.
func (e *Exporter) create(ctx context.Context, namespace, claim string) (*exportv1beta1.VirtualMachineExport, error) {
	name := Name(claim)
	tokenName := name + "-token"
	vme := &exportv1beta1.VirtualMachineExport{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: map[string]string{"vm.novasphere.dev/disk": claim}},
		Spec: exportv1beta1.VirtualMachineExportSpec{
			Source:         corev1.TypedLocalObjectReference{APIGroup: ptr.To(""), Kind: "PersistentVolumeClaim", Name: claim},
			TokenSecretRef: &tokenName,
			TTLDuration:    &metav1.Duration{Duration: e.TTL},
		},
	}
	created, err := e.Exports.VirtualMachineExports(namespace).Create(ctx, vme, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return e.Exports.VirtualMachineExports(namespace).Get(ctx, name, metav1.GetOptions{})
	}
	if err != nil {
		return nil, fmt.Errorf("creating the VirtualMachineExport %s: %w", name, err)
	}
	token := make([]byte, 32)
	_, _ = rand.Read(token)
	_, err = e.Secrets.Secrets(namespace).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: tokenName, Namespace: namespace, OwnerReferences: []metav1.OwnerReference{{
			APIVersion: "export.kubevirt.io/v1beta1", Kind: "VirtualMachineExport", Name: name, UID: created.UID,
		}}},
		Data: map[string][]byte{"token": []byte(hex.EncodeToString(token))},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("creating the export token Secret: %w", err)
	}
	return created, nil
}
