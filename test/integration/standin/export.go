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

package standin

import (
	"compress/gzip"
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	exportv1beta1 "kubevirt.io/api/export/v1beta1"
	kubevirtclient "kubevirt.io/client-go/kubevirt"
)

// Exports plays KubeVirt's export: a stand-in virt-exportserver speaking its
// protocol for PVC volumes (/volumes/<pvc>/disk.img with Range,
// /volumes/<pvc>/disk.img.gz; the token in the x-kubevirt-export-token
// header or query parameter), and a stand-in of virt-controller's part,
// which marks each VirtualMachineExport Ready with its internal links and
// certificate once ReadyAfter has passed.
type Exports struct {
	srv      *httptest.Server
	kubevirt kubevirtclient.Interface
	kube     kubernetes.Interface

	// ReadyAfter delays Ready, so clients meet a not-ready export.
	ReadyAfter time.Duration
	// Requests counts the export server's requests.
	Requests atomic.Int64
	// Pace, when set, sends whole raw volumes 1 MiB at a time with this
	// pause between, so a test can cut a stream in the middle.
	Pace atomic.Int64 // a time.Duration

	mu      sync.Mutex
	volumes map[string]string // namespace/pvc → file served
	tokens  map[string]string // namespace/pvc → the token it takes
}

// StartExports starts the export server and controller until ctx ends.
func StartExports(ctx context.Context, cfg *rest.Config) (*Exports, error) {
	kv, err := kubevirtclient.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	e := &Exports{kubevirt: kv, kube: kube, volumes: map[string]string{}, tokens: map[string]string{}, ReadyAfter: time.Second}
	e.srv = httptest.NewTLSServer(http.HandlerFunc(e.serve))
	go func() { <-ctx.Done(); e.srv.Close() }()
	go wait.UntilWithContext(ctx, e.sync, 200*time.Millisecond)
	return e, nil
}

// SetVolume makes the server serve file as the volume of PVC pvc.
func (e *Exports) SetVolume(namespace, pvc, file string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.volumes[namespace+"/"+pvc] = file
}

// Stop takes the export server down (connections in flight break).
func (e *Exports) Stop() { e.srv.CloseClientConnections(); e.srv.Close() }

// Restart brings a stopped export server back on its address, with the same
// certificate (httptest's), so the exports' links hold again.
func (e *Exports) Restart() error {
	addr := e.srv.Listener.Addr().String()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(e.serve))
	srv.Listener.Close()
	srv.Listener = ln
	srv.StartTLS()
	e.srv = srv
	return nil
}

func (e *Exports) serve(w http.ResponseWriter, r *http.Request) {
	e.Requests.Add(1)
	// /<namespace>/volumes/<pvc>/disk.img[.gz]: the namespace keeps tests apart.
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if len(parts) != 4 || parts[1] != "volumes" {
		http.NotFound(w, r)
		return
	}
	key := parts[0] + "/" + parts[2]
	e.mu.Lock()
	file, token := e.volumes[key], e.tokens[key]
	e.mu.Unlock()
	got := r.Header.Get("x-kubevirt-export-token")
	if got == "" {
		got = r.URL.Query().Get("x-kubevirt-export-token")
	}
	if token == "" || got != token {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	f, err := os.Open(file)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	switch parts[3] {
	case "disk.img":
		fi, _ := f.Stat()
		if pace := time.Duration(e.Pace.Load()); pace > 0 && r.Header.Get("Range") == "" {
			w.Header().Set("Content-Length", fmt.Sprint(fi.Size()))
			w.WriteHeader(http.StatusOK)
			buf := make([]byte, 1<<20)
			for {
				n, err := f.Read(buf)
				if n > 0 {
					if _, werr := w.Write(buf[:n]); werr != nil {
						return
					}
					w.(http.Flusher).Flush()
					time.Sleep(pace)
				}
				if err != nil {
					return
				}
			}
		}
		http.ServeContent(w, r, "disk.img", fi.ModTime(), f)
	case "disk.img.gz":
		w.Header().Set("Content-Type", "application/gzip")
		// The fastest level: the tests move 1 GiB of random bytes.
		zw, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
		_, _ = io.Copy(zw, f)
		_ = zw.Close()
	default:
		http.NotFound(w, r)
	}
}

// sync marks exports Ready, as virt-controller does once the export server runs.
func (e *Exports) sync(ctx context.Context) {
	l, err := e.kubevirt.ExportV1beta1().VirtualMachineExports(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	cert := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.srv.Certificate().Raw}))
	for i := range l.Items {
		vme := &l.Items[i]
		if vme.Status != nil && vme.Status.Phase == exportv1beta1.Ready {
			continue
		}
		if time.Since(vme.CreationTimestamp.Time) < e.ReadyAfter || vme.Spec.TokenSecretRef == nil {
			if vme.Status == nil {
				vme.Status = &exportv1beta1.VirtualMachineExportStatus{Phase: exportv1beta1.Pending}
				_, _ = e.kubevirt.ExportV1beta1().VirtualMachineExports(vme.Namespace).UpdateStatus(ctx, vme, metav1.UpdateOptions{})
			}
			continue
		}
		s, err := e.kube.CoreV1().Secrets(vme.Namespace).Get(ctx, *vme.Spec.TokenSecretRef, metav1.GetOptions{})
		if err != nil {
			continue
		}
		pvc := vme.Spec.Source.Name
		e.mu.Lock()
		e.tokens[vme.Namespace+"/"+pvc] = string(s.Data["token"])
		e.mu.Unlock()
		base := fmt.Sprintf("%s/%s/volumes/%s/", e.srv.URL, vme.Namespace, pvc)
		vme.Status = &exportv1beta1.VirtualMachineExportStatus{
			Phase:          exportv1beta1.Ready,
			TokenSecretRef: vme.Spec.TokenSecretRef,
			ServiceName:    "virt-export-" + vme.Name,
			Links: &exportv1beta1.VirtualMachineExportLinks{Internal: &exportv1beta1.VirtualMachineExportLink{
				Cert: cert,
				Volumes: []exportv1beta1.VirtualMachineExportVolume{{Name: pvc, Formats: []exportv1beta1.VirtualMachineExportVolumeFormat{
					{Format: exportv1beta1.KubeVirtRaw, Url: base + "disk.img"},
					{Format: exportv1beta1.KubeVirtGz, Url: base + "disk.img.gz"},
				}}},
			}},
		}
		_, _ = e.kubevirt.ExportV1beta1().VirtualMachineExports(vme.Namespace).UpdateStatus(ctx, vme, metav1.UpdateOptions{})
	}
}
