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
// VirtualMachineExport: of the disk's PVC while its VM is stopped, of a
// VirtualMachineSnapshot of the VM while it runs (KubeVirt does not export
// a PVC that a running VM uses). It creates (or reuses) the snapshot and the
// export, with a token Secret of its own, and says where the export server
// serves the volume, with which token and which CA. Streaming the bytes is
// the caller's; the token never leaves the server.
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

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
)

// TokenHeader is how KubeVirt's export server takes the token.
const TokenHeader = "x-kubevirt-export-token"

// LabelDisk, on the exports and snapshots Wukong makes, is the disk's
// claim (<wukong>-<disk>).
const LabelDisk = "vm.novasphere.dev/disk"

// DefaultTTL is how long an export (and a snapshot) lives when the request
// says nothing.
const DefaultTTL = time.Hour

// Exporter finds or makes the export of a PVC or of a snapshot.
type Exporter struct {
	Exports exportclient.ExportV1beta1Interface
	Secrets corev1client.SecretsGetter
	// TTL lets KubeVirt delete an export nobody uses any more, when the
	// request names none (DefaultTTL if 0).
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
	// Origin is what the export reads: the PVC or a snapshot.
	Origin vm.DiskSource

	// reread reads the token Secret again (nil: it cannot).
	reread func(ctx context.Context) (string, error)
}

// Do asks the export server for the volume with method (GET or HEAD) and,
// if rng is set, a Range header. The token travels in a header, never in the
// URL, so an error that names the URL gives nothing away. KubeVirt's export
// server reads the token from its mounted Secret, which may have been
// rotated since this Source read it: a 401 re-reads the Secret once and asks
// again. The caller reads the status.
func (s *Source) Do(ctx context.Context, method, rng string) (*http.Response, error) {
	resp, err := s.do(ctx, method, rng)
	if err != nil || resp.StatusCode != http.StatusUnauthorized || s.reread == nil {
		return resp, err
	}
	token, rerr := s.reread(ctx)
	if rerr != nil || token == s.Token {
		return resp, nil // the 401 stands
	}
	resp.Body.Close()
	s.Token = token
	return s.do(ctx, method, rng)
}

func (s *Source) do(ctx context.Context, method, rng string) (*http.Response, error) {
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

// NotReadyError says the export (or the snapshot it reads) is being
// prepared: ask again later.
type NotReadyError struct {
	// Kind is VirtualMachineExport (when empty) or VirtualMachineSnapshot.
	Kind          string
	Export, Phase string
}

func (e *NotReadyError) Error() string {
	if e.Kind == "VirtualMachineSnapshot" {
		return fmt.Sprintf("the VirtualMachineSnapshot %s is %s, not ready to use yet", e.Export, e.Phase)
	}
	return fmt.Sprintf("the VirtualMachineExport %s is %s, not Ready yet", e.Export, e.Phase)
}

// RefusedError says the disk cannot be read this way, and what to do
// instead: waiting does not help (a 409).
type RefusedError struct{ Message string }

func (e *RefusedError) Error() string { return e.Message }

// Name is the VirtualMachineExport of a PVC.
func Name(claim string) string { return "wukong-" + claim }

// target is an export to find or make.
type target struct {
	name      string
	namespace string
	source    corev1.TypedLocalObjectReference
	claim     string // the volume in the export's links: the PVC's name, for a snapshot too
	ttl       time.Duration
	owner     metav1.Object // the Wukong
	origin    vm.DiskSource
}

// PVC returns where the volume of PVC claim, a disk of the Wukong owner, is
// served in format (raw or gzip), creating the export (with ttl, 0 for the
// default) when there is none. A *NotReadyError means the export server is
// not up yet.
func (e *Exporter) PVC(ctx context.Context, owner metav1.Object, claim string, format exportv1beta1.ExportVolumeFormat, ttl time.Duration) (*Source, error) {
	return e.open(ctx, target{
		name: Name(claim), namespace: owner.GetNamespace(), claim: claim, ttl: ttl, owner: owner,
		source: corev1.TypedLocalObjectReference{APIGroup: ptr.To(""), Kind: "PersistentVolumeClaim", Name: claim},
		origin: vm.DiskSource{Type: vm.DiskSourcePVC, Name: claim},
	}, format)
}

// open finds or makes t's export and says where it serves t.claim.
func (e *Exporter) open(ctx context.Context, t target, format exportv1beta1.ExportVolumeFormat) (*Source, error) {
	vme, err := e.Exports.VirtualMachineExports(t.namespace).Get(ctx, t.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		vme, err = e.create(ctx, t)
	}
	if err != nil {
		return nil, err
	}
	// Someone who may create exports in the namespace may have taken the
	// name: read only one of what was asked.
	if s := vme.Spec.Source; s.Kind != t.source.Kind || s.Name != t.source.Name || ptr.Deref(s.APIGroup, "") != ptr.Deref(t.source.APIGroup, "") {
		return nil, &RefusedError{Message: fmt.Sprintf("the VirtualMachineExport %s/%s exports the %s %s, not the %s %s; delete it or let its TTL end",
			t.namespace, t.name, s.Kind, s.Name, t.source.Kind, t.source.Name)}
	}
	st := vme.Status
	if st != nil && st.Phase == exportv1beta1.Skipped {
		return nil, &RefusedError{Message: fmt.Sprintf("KubeVirt skipped the VirtualMachineExport %s: the %s %s holds no volume to export", t.name, t.source.Kind, t.source.Name)}
	}
	if st == nil || st.Phase != exportv1beta1.Ready || st.Links == nil || st.Links.Internal == nil {
		phase := "Pending"
		if st != nil && st.Phase != "" {
			phase = string(st.Phase)
		}
		return nil, &NotReadyError{Export: t.name, Phase: phase}
	}
	var url string
	for _, v := range st.Links.Internal.Volumes {
		if v.Name != t.claim {
			continue
		}
		for _, f := range v.Formats {
			if f.Format == format {
				url = f.Url
			}
		}
	}
	if url == "" {
		return nil, fmt.Errorf("the VirtualMachineExport %s offers no %s format for volume %s", t.name, format, t.claim)
	}
	secretName := ptr.Deref(vme.Spec.TokenSecretRef, "")
	if st.TokenSecretRef != nil {
		secretName = *st.TokenSecretRef
	}
	reread := func(ctx context.Context) (string, error) {
		s, err := e.Secrets.Secrets(t.namespace).Get(ctx, secretName, metav1.GetOptions{})
		if err != nil {
			return "", fmt.Errorf("reading the export token Secret %s: %w", secretName, err)
		}
		return string(s.Data["token"]), nil
	}
	token, err := reread(ctx)
	if err != nil {
		return nil, err
	}
	client, err := e.client(st.Links.Internal.Cert)
	if err != nil {
		return nil, fmt.Errorf("the VirtualMachineExport %s: %w", t.name, err)
	}
	return &Source{URL: url, Token: token, Client: client, Export: t.name, Origin: t.origin, reread: reread}, nil
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

// ttl is the TTL of an export or snapshot made for a request asking for ttl.
func (e *Exporter) ttl(ttl time.Duration) time.Duration {
	switch {
	case ttl > 0:
		return ttl
	case e.TTL > 0:
		return e.TTL
	}
	return DefaultTTL
}

// WukongOwner is the owner reference of what Wukong makes for w's disks, so
// that it goes with w (garbage collection; the VM controller's finaliser
// deletes it too).
func WukongOwner(w metav1.Object) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: v1alpha1.SchemeGroupVersion.String(), Kind: "Wukong", Name: w.GetName(), UID: w.GetUID()}
}

// OwnedBy says whether obj names w (its uid) among its owners.
func OwnedBy(obj, w metav1.Object) bool {
	for _, ref := range obj.GetOwnerReferences() {
		if ref.Kind == "Wukong" && ref.UID == w.GetUID() && ref.Name == w.GetName() {
			return true
		}
	}
	return false
}

// create makes t's export and its token Secret, owned by the export so that
// KubeVirt's TTL clean-up takes both.
func (e *Exporter) create(ctx context.Context, t target) (*exportv1beta1.VirtualMachineExport, error) {
	tokenName := t.name + "-token"
	vme := &exportv1beta1.VirtualMachineExport{
		ObjectMeta: metav1.ObjectMeta{Name: t.name, Namespace: t.namespace, Labels: map[string]string{LabelDisk: t.claim}},
		Spec: exportv1beta1.VirtualMachineExportSpec{
			Source:         t.source,
			TokenSecretRef: &tokenName,
			TTLDuration:    &metav1.Duration{Duration: e.ttl(t.ttl)},
		},
	}
	if t.owner != nil {
		vme.Labels[v1alpha1.LabelWukong] = t.owner.GetName()
		vme.OwnerReferences = []metav1.OwnerReference{WukongOwner(t.owner)}
	}
	created, err := e.Exports.VirtualMachineExports(t.namespace).Create(ctx, vme, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return e.Exports.VirtualMachineExports(t.namespace).Get(ctx, t.name, metav1.GetOptions{})
	}
	if err != nil {
		return nil, fmt.Errorf("creating the VirtualMachineExport %s: %w", t.name, err)
	}
	token := make([]byte, 32)
	_, _ = rand.Read(token)
	_, err = e.Secrets.Secrets(t.namespace).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: tokenName, Namespace: t.namespace, OwnerReferences: []metav1.OwnerReference{{
			APIVersion: "export.kubevirt.io/v1beta1", Kind: "VirtualMachineExport", Name: t.name, UID: created.UID,
		}}},
		Data: map[string][]byte{"token": []byte(hex.EncodeToString(token))},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("creating the export token Secret: %w", err)
	}
	return created, nil
}
