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
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	cdiclient "kubevirt.io/client-go/containerizeddataimporter"
	snapclient "kubevirt.io/client-go/externalsnapshotter"
	kubevirtclient "kubevirt.io/client-go/kubevirt"
	cdiv1 "kubevirt.io/containerized-data-importer-api/pkg/apis/core/v1beta1"
)

// Controllers play virt-controller and CDI's importer for the tests. They are
// stand-ins, not KubeVirt or CDI: no VM boots and nothing is written to a
// volume, but the objects move the way the real controllers move them, and
// an http source is really downloaded (and its checksum checked), so a wrong
// URL fails as it would in CDI's importer.
type Controllers struct {
	kubevirt kubevirtclient.Interface
	cdi      cdiclient.Interface
	kube     kubernetes.Interface
	snap     snapclient.Interface
	// snapDir holds the CSI stand-in's snapshot copies; stop ends the
	// VM, snapshot and CSI loop, virtDone says it ended (Close).
	snapDir  string
	stop     context.CancelFunc
	virtDone <-chan struct{}

	// Address gives a started VM's VMI its IP; 10.0.2.15 when nil.
	Address func(namespace, name string) string
	// Step is the pause between progress updates of an import.
	Step time.Duration

	// LaunchAfter delays a virt-launcher pod's Running (and so its VMI's),
	// so a test can see a VM Starting. A time.Duration.
	LaunchAfter atomic.Int64
	// SnapshotReadyAfter delays the cut of each VolumeSnapshot (and so the
	// VirtualMachineSnapshot's readiness), so a test can see a snapshot in
	// progress or past its failureDeadline. A time.Duration.
	SnapshotReadyAfter atomic.Int64

	w *kvCaches // virt-controller's and the CSI stand-in's reads

	mu       sync.Mutex
	started  map[string]bool    // DataVolumes being imported
	claimed  map[string]bool    // DataVolumes whose PVC was made
	launched map[types.UID]bool // VMIs whose launcher pod was made
}

// StartControllers runs the stand-ins until ctx ends.
func StartControllers(ctx context.Context, cfg *rest.Config) (*Controllers, error) {
	kv, err := kubevirtclient.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	cdi, err := cdiclient.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	c := &Controllers{kubevirt: kv, cdi: cdi, kube: kube, Step: 100 * time.Millisecond, started: map[string]bool{}, claimed: map[string]bool{}, launched: map[types.UID]bool{}}
	if err := c.startVirt(ctx, cfg); err != nil { // virtcontroller.go, snapshot.go, storage.go
		return nil, err
	}
	go wait.UntilWithContext(ctx, c.syncDataVolumes, 200*time.Millisecond)
	return c, nil
}

// Close stops the VM, snapshot and CSI stand-ins and removes the snapshot
// copies they keep on disk (a GiB or two by the end of a package): their
// context's end removes them too, but a test binary may exit before that
// goroutine runs, and a pass still copying would write into a directory
// being removed.
func (c *Controllers) Close() error {
	c.stop()
	<-c.virtDone
	return os.RemoveAll(c.snapDir)
}

// syncDataVolumes starts an import for each new DataVolume.
func (c *Controllers) syncDataVolumes(ctx context.Context) {
	dvs, err := c.cdi.CdiV1beta1().DataVolumes(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	for i := range dvs.Items {
		dv := dvs.Items[i].DeepCopy()
		c.ensureClaim(ctx, dv)
		if dv.Spec.Source != nil && dv.Spec.Source.Upload != nil {
			continue // the upload stand-in's (upload_datavolumes.go)
		}
		key := dv.Namespace + "/" + dv.Name + "/" + string(dv.UID)
		c.mu.Lock()
		seen := c.started[key]
		c.started[key] = true
		c.mu.Unlock()
		if !seen && dv.Status.Phase == "" {
			go c.importDV(ctx, dv)
		}
	}
}

// ensureClaim does CDI's first step for a DataVolume: its PVC, of the same
// name, with the DataVolume as controller. A PVC of that name that is there
// already stays as it is (CDI then reports the DataVolume's claim as not
// its own).
func (c *Controllers) ensureClaim(ctx context.Context, dv *cdiv1.DataVolume) {
	key := dv.Namespace + "/" + dv.Name + "/" + string(dv.UID)
	c.mu.Lock()
	done := c.claimed[key]
	c.mu.Unlock()
	if done || dv.DeletionTimestamp != nil {
		return
	}
	pvcs := c.kube.CoreV1().PersistentVolumeClaims(dv.Namespace)
	mark := func() {
		c.mu.Lock()
		c.claimed[key] = true
		c.mu.Unlock()
	}
	_, err := pvcs.Get(ctx, dv.Name, metav1.GetOptions{})
	if err == nil {
		mark()
	}
	if !apierrors.IsNotFound(err) {
		return
	}
	size := resource.MustParse("1Gi")
	var class *string // nil: kube-apiserver's DefaultStorageClass admission picks
	if s := dv.Spec.Storage; s != nil {
		if q, ok := s.Resources.Requests[corev1.ResourceStorage]; ok {
			size = q
		}
		class = s.StorageClassName
	} else if p := dv.Spec.PVC; p != nil {
		class = p.StorageClassName
	}
	_, err = pvcs.Create(ctx, &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: dv.Name, Namespace: dv.Namespace, Labels: map[string]string{"app": "containerized-data-importer"},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(dv, cdiv1.SchemeGroupVersion.WithKind("DataVolume"))}},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, StorageClassName: class,
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: size}}},
	}, metav1.CreateOptions{})
	if err == nil || apierrors.IsAlreadyExists(err) {
		mark()
	}
}

// importDV moves one DataVolume through CDI's phases: Pending,
// ImportScheduled, ImportInProgress with a progress percentage, then
// Succeeded, or an importer error as CDI reports it (Running=False, reason
// Error, with the importer's message).
func (c *Controllers) importDV(ctx context.Context, dv *cdiv1.DataVolume) {
	set := func(phase cdiv1.DataVolumePhase, progress string, running corev1.ConditionStatus, reason, msg string) bool {
		return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			cur, err := c.cdi.CdiV1beta1().DataVolumes(dv.Namespace).Get(ctx, dv.Name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return false, err
			}
			if err != nil {
				return false, nil
			}
			cur.Status.Phase, cur.Status.Progress, cur.Status.ClaimName = phase, cdiv1.DataVolumeProgress(progress), dv.Name
			cur.Status.Conditions = []cdiv1.DataVolumeCondition{{Type: cdiv1.DataVolumeRunning, Status: running, Reason: reason, Message: msg}}
			if reason == "Error" {
				cur.Status.RestartCount++
			}
			_, err = c.cdi.CdiV1beta1().DataVolumes(dv.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
			return err == nil, nil
		}) == nil
	}
	if !set(cdiv1.Pending, "N/A", corev1.ConditionFalse, "Pending", "") ||
		!set(cdiv1.ImportScheduled, "N/A", corev1.ConditionFalse, "Scheduled", "") {
		return
	}
	report := func(pct int) bool {
		return set(cdiv1.ImportInProgress, fmt.Sprintf("%d.00%%", pct), corev1.ConditionTrue, "Pod is running", "")
	}
	var err error
	switch src := dv.Spec.Source; {
	case src == nil && dv.Spec.SourceRef != nil:
		err = c.cloneSourceRef(ctx, dv, report)
	case src == nil:
		err = fmt.Errorf("no source")
	case src.HTTP != nil:
		err = c.importHTTP(ctx, dv, src.HTTP, report)
	case src.S3 != nil:
		err = c.importS3(ctx, dv, src.S3, report)
	case src.PVC != nil:
		if _, gerr := c.kube.CoreV1().PersistentVolumeClaims(src.PVC.Namespace).Get(ctx, src.PVC.Name, metav1.GetOptions{}); gerr != nil {
			err = fmt.Errorf("source PVC %s/%s: %v", src.PVC.Namespace, src.PVC.Name, gerr)
		} else {
			err = c.steps(ctx, report)
		}
	default:
		// registry and blank: no bytes to fetch here; progress as CDI reports it.
		err = c.steps(ctx, report)
	}
	if err != nil {
		set(cdiv1.ImportInProgress, "N/A", corev1.ConditionFalse, "Error", err.Error())
		return
	}
	set(cdiv1.Succeeded, "100.0%", corev1.ConditionFalse, "Completed", "Import Complete")
}

// cloneSourceRef clones from a DataSource as CDI does
// (pkg/controller/datavolume/clone-controller-base.go,
// populateSourceIfSourceRef): the DataSource's source (its status' for a
// chained one), which must be set, then a PVC clone from the source's
// namespace, the DataVolume's when it names none.
func (c *Controllers) cloneSourceRef(ctx context.Context, dv *cdiv1.DataVolume, report func(int) bool) error {
	ref := dv.Spec.SourceRef
	if ref.Kind != cdiv1.DataVolumeDataSource {
		return fmt.Errorf("Unsupported sourceRef kind %s, currently only %s is supported", ref.Kind, cdiv1.DataVolumeDataSource)
	}
	ns := dv.Namespace
	if ref.Namespace != nil && *ref.Namespace != "" {
		ns = *ref.Namespace
	}
	ds, err := c.cdi.CdiV1beta1().DataSources(ns).Get(ctx, ref.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	src := ds.Spec.Source
	if src.DataSource != nil {
		src = ds.Status.Source
	}
	switch {
	case src.PVC != nil:
		pns := src.PVC.Namespace
		if pns == "" {
			pns = dv.Namespace
		}
		if _, err := c.kube.CoreV1().PersistentVolumeClaims(pns).Get(ctx, src.PVC.Name, metav1.GetOptions{}); err != nil {
			return fmt.Errorf("source PVC %s/%s: %v", pns, src.PVC.Name, err)
		}
	case src.Snapshot == nil:
		return fmt.Errorf("Empty source field in '%s'. DataSource may not be ready yet", ds.Name)
	}
	return c.steps(ctx, report)
}

func (c *Controllers) steps(ctx context.Context, report func(int) bool) error {
	for _, p := range []int{0, 25, 50, 75} {
		if !report(p) {
			return ctx.Err()
		}
		time.Sleep(c.Step)
	}
	return nil
}

// importS3 reads the object as CDI's S3 importer does (URL
// scheme://endpoint/bucket/key, the Secret's accessKeyId and secretKey),
// from a real S3 server, so a wrong bucket, key or credential fails there.
func (c *Controllers) importS3(ctx context.Context, dv *cdiv1.DataVolume, src *cdiv1.DataVolumeSourceS3, report func(int) bool) error {
	u, err := url.Parse(src.URL)
	if err != nil {
		return fmt.Errorf("unable to parse the S3 URL %q: %v", src.URL, err)
	}
	bucket, key, _ := strings.Cut(strings.TrimPrefix(u.Path, "/"), "/")
	var creds *credentials.Credentials
	if src.SecretRef != "" {
		s, err := c.kube.CoreV1().Secrets(dv.Namespace).Get(ctx, src.SecretRef, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("unable to get the S3 Secret %s: %v", src.SecretRef, err)
		}
		creds = credentials.NewStaticV4(string(s.Data["accessKeyId"]), string(s.Data["secretKey"]), "")
	} else {
		creds = credentials.NewStaticV4("", "", "")
	}
	client, err := minio.New(u.Host, &minio.Options{Creds: creds, Secure: u.Scheme == "https"})
	if err != nil {
		return err
	}
	obj, err := client.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return fmt.Errorf("could not get object %s from bucket %s: %v", key, bucket, err)
	}
	defer obj.Close()
	info, err := obj.Stat()
	if err != nil {
		return fmt.Errorf("could not get object %s from bucket %s: %v", key, bucket, err)
	}
	if err := c.read(obj, io.Discard, info.Size, report); err != nil {
		return fmt.Errorf("reading object %s from bucket %s: %v", key, bucket, err)
	}
	return nil
}

// read consumes r into w as an importer writes a volume, reporting the
// percentage every tenth of total (when known) and pausing Step there.
func (c *Controllers) read(r io.Reader, w io.Writer, total int64, report func(int) bool) error {
	var n int64
	buf := make([]byte, 256<<10)
	last := -1
	for {
		k, err := r.Read(buf)
		_, _ = w.Write(buf[:k])
		n += int64(k)
		if pct := int(n * 99 / max(total, 1)); total > 0 && pct/10 != last/10 {
			last = pct
			report(pct)
			time.Sleep(c.Step)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// importHTTP downloads the source as CDI's importer does, with the Secret's
// basic auth, reporting progress by bytes, and checks the checksum.
func (c *Controllers) importHTTP(ctx context.Context, dv *cdiv1.DataVolume, src *cdiv1.DataVolumeSourceHTTP, report func(int) bool) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src.URL, nil)
	if err != nil {
		return err
	}
	if src.SecretRef != "" {
		s, err := c.kube.CoreV1().Secrets(dv.Namespace).Get(ctx, src.SecretRef, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("unable to get the auth Secret %s: %v", src.SecretRef, err)
		}
		req.SetBasicAuth(string(s.Data["accessKeyId"]), string(s.Data["secretKey"]))
	}
	client := http.DefaultClient
	if src.CertConfigMap != "" {
		// As CDI does: trust the CA bundle in the ConfigMap, whatever its key.
		cm, err := c.kube.CoreV1().ConfigMaps(dv.Namespace).Get(ctx, src.CertConfigMap, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("unable to get the CA ConfigMap %s: %v", src.CertConfigMap, err)
		}
		pool := x509.NewCertPool()
		for _, v := range cm.Data {
			pool.AppendCertsFromPEM([]byte(v))
		}
		client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("unable to connect to http data source: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("unable to connect to http data source: expected status code 200, got %d. Status: %s", resp.StatusCode, resp.Status)
	}
	var h hash.Hash
	algo, want, _ := strings.Cut(src.Checksum, ":")
	switch algo {
	case "sha256":
		h = sha256.New()
	case "sha512":
		h = sha512.New()
	case "sha1":
		h = sha1.New()
	case "md5":
		h = md5.New()
	case "":
		h = sha256.New()
	default:
		return fmt.Errorf("unsupported checksum algorithm %q", algo)
	}
	if err := c.read(resp.Body, h, resp.ContentLength, report); err != nil {
		return fmt.Errorf("unable to read the http data source: %v", err)
	}
	if src.Checksum != "" {
		if got := hex.EncodeToString(h.Sum(nil)); got != want {
			return fmt.Errorf("checksum mismatch: expected %s, got %s:%s", src.Checksum, algo, got)
		}
	}
	return nil
}
