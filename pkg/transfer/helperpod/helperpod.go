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

// Package helperpod runs, for method pvc, a short-lived pod that mounts a
// Wukong's data volume (<wukong>-files) and serves it with wukong-agent, so
// that wukong-apiserver reads and writes the volume's files without the
// guest: also while the VM is stopped. The pod is made on demand, reused
// while transfers run and deleted when idle. It only reaches the volume;
// pkg/subresource/files moves the bytes through the agent client.
package helperpod

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	kubevirtclient "kubevirt.io/client-go/kubevirt/typed/core/v1"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/transfer/agent"
	"github.com/novasphere/wukong/pkg/transfer/owner"
)

// What a helper pod is made of. The stand-in kubelet of the integration
// tests (test/integration/standin/helperpod.go) reads the same names.
const (
	// Port the agent listens on in the pod: wukong-agent's default, as in
	// a guest of method http (not wukong-apiserver's 8443, which in the
	// tests would also share the host's network with the deployment
	// rehearsal's server).
	Port = 8080
	// MountDir is where the pod mounts the data volume; the agent serves it
	// as the guest's mount path (--root <mountPath>=/mnt/pvc).
	MountDir = "/mnt/pvc"
	// SecretDir is where the pod mounts the agent's Secret.
	SecretDir = "/etc/wukong-agent"
	// AgentPath is the agent in wukong-apiserver's image.
	AgentPath = "/usr/local/bin/wukong-agent"
	// Keys of the agent's Secret.
	TokenKey = "token"
	CertKey  = "tls.crt"
	KeyKey   = "tls.key"

	// LabelComponent marks helper pods (with v1alpha1.LabelWukong), so the
	// reaper finds the idle ones of every replica and of earlier runs.
	LabelComponent = "app.kubernetes.io/component"
	Component      = "wukong-files-helper"
	// AnnotationLastUsed is when a transfer last used the pod (RFC 3339),
	// kept fresh while transfers run, so that no replica reaps a pod
	// another one uses.
	AnnotationLastUsed = "vm.novasphere.dev/helper-last-used"

	// RunAsUser is the helper's user (restricted PodSecurity: non-root); the
	// volume is given to its group through fsGroup.
	RunAsUser = 65532
)

// ClaimName is the PVC (and DataVolume) of w's data volume.
func ClaimName(wukong string) string { return wukong + "-files" }

// PodName is w's helper pod.
func PodName(wukong string) string { return wukong + "-files-helper" }

// SecretName is the Secret with the helper agent's token and certificate.
func SecretName(wukong string) string { return wukong + "-files-agent" }

// ServerName is the name the helper agent's certificate carries (a pod's
// address changes; this does not).
func ServerName(namespace, wukong string) string {
	return "wukong-files-helper." + namespace + "." + wukong
}

// Errors a Manager returns; pkg/subresource/files turns them into Statuses.
var (
	// ErrNoVolume: the Wukong declares no data volume, or it is not there yet.
	ErrNoVolume = errors.New("no data volume")
	// ErrInUse: the VM runs and its ReadWriteOnce volume is its launcher's.
	ErrInUse = errors.New("the data volume is in use by the running VM")
	// ErrStarting: the helper pod is not ready yet.
	ErrStarting = errors.New("the helper pod is starting")
)

// StartingError says what the helper pod still waits for.
type StartingError struct{ Pod, State string }

func (e *StartingError) Error() string {
	return fmt.Sprintf("the helper pod %s that serves the data volume is not ready yet: %s", e.Pod, e.State)
}

// Is makes errors.Is(err, ErrStarting) hold.
func (e *StartingError) Is(target error) bool { return target == ErrStarting }

// Manager makes, reuses and reaps helper pods, one per Wukong.
type Manager struct {
	// Image is wukong-apiserver's own image, which holds the agent. When
	// empty, ResolveImage finds it (once) on first use.
	Image        string
	ResolveImage func(ctx context.Context) (string, error)
	// IdleTimeout: a helper pod no transfer used for so long is deleted.
	IdleTimeout time.Duration
	// ReadyTimeout bounds the wait for a helper pod to be ready within one
	// request; past it the request is told to retry (503).
	ReadyTimeout time.Duration
	// PollInterval is how often a starting pod is looked at (default 250ms).
	PollInterval time.Duration

	Pods    corev1client.PodsGetter
	Secrets corev1client.SecretsGetter
	Claims  corev1client.PersistentVolumeClaimsGetter
	VMIs    kubevirtclient.VirtualMachineInstancesGetter
	Owner   *owner.Checker

	mu      sync.Mutex
	helpers map[types.UID]*helper // by Wukong UID
}

// helper is one helper pod this server uses.
type helper struct {
	namespace, wukong string
	pod               types.UID
	key               string // pod UID, address, Secret version: what the client was made for
	client            *agent.Client
	active            int
	lastUsed          time.Time
	stamped           time.Time // when AnnotationLastUsed was last written
}

// Lease is a client of a ready helper pod, held for one request.
type Lease struct {
	*agent.Client
	m    *Manager
	w    types.UID
	h    *helper
	once sync.Once
}

// Release gives the lease back; broken drops the client (the request was
// cut for a stall), so the next request connects anew.
func (l *Lease) Release(broken bool) {
	l.once.Do(func() {
		l.m.mu.Lock()
		defer l.m.mu.Unlock()
		l.h.active--
		l.h.lastUsed = time.Now()
		current := l.m.helpers[l.w] == l.h
		switch {
		case broken:
			l.h.client.Close()
			if current {
				l.h.key = "" // the next Acquire makes a new client
			}
		case !current && l.h.active == 0:
			// A new pod or Secret replaced this client while it was used.
			l.h.client.Close()
		}
	})
}

// Acquire returns a client of w's ready helper pod, making the pod (and its
// Secret) first when there is none. It checks that the data volume is w's
// own, and refuses while the VM runs when the volume is ReadWriteOnce.
func (m *Manager) Acquire(ctx context.Context, w *vm.Wukong) (*Lease, error) {
	ft := w.Spec.FileTransfer
	if ft == nil || ft.PVCConfig == nil {
		return nil, fmt.Errorf("%w: spec.fileTransfer.pvcConfig declares none", ErrNoVolume)
	}
	claim := ClaimName(w.Name)
	if err := m.Owner.Claim(ctx, w, claim); err != nil {
		return nil, err
	}
	pvc, err := m.Claims.PersistentVolumeClaims(w.Namespace).Get(ctx, claim, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, fmt.Errorf("%w: the PersistentVolumeClaim %s does not exist yet (KubeVirt and CDI make it from the VirtualMachine's DataVolume)", ErrNoVolume, claim)
	case err != nil:
		return nil, fmt.Errorf("reading the PersistentVolumeClaim %s/%s: %w", w.Namespace, claim, err)
	}
	if !slices.Contains(pvc.Spec.AccessModes, corev1.ReadWriteMany) {
		if err := m.checkStopped(ctx, w, claim); err != nil {
			return nil, err
		}
	}
	if err := m.image(ctx); err != nil {
		return nil, err
	}
	secret, err := m.ensureSecret(ctx, w)
	if err != nil {
		return nil, err
	}
	pod, err := m.ensurePod(ctx, w, ft.PVCConfig.MountPath, claim)
	if err != nil {
		return nil, err
	}
	if pod, err = m.waitReady(ctx, pod); err != nil {
		return nil, err
	}
	return m.lease(ctx, w, pod, secret)
}

// image resolves the helper image when no flag named it.
func (m *Manager) image(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Image != "" {
		return nil
	}
	if m.ResolveImage == nil {
		return errors.New("no image for helper pods: set --helper-image")
	}
	img, err := m.ResolveImage(ctx)
	if err != nil {
		return fmt.Errorf("finding this server's own image for the helper pod (or set --helper-image): %w", err)
	}
	m.Image = img
	return nil
}

// checkStopped refuses while w's VM has an instance that is not final: its
// virt-launcher pod holds the ReadWriteOnce volume, and a helper pod on
// another node would wait for it forever (the attach/detach controller's
// Multi-Attach error).
func (m *Manager) checkStopped(ctx context.Context, w *vm.Wukong, claim string) error {
	vmi, err := m.VMIs.VirtualMachineInstances(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("reading the VirtualMachineInstance %s/%s: %w", w.Namespace, w.Name, err)
	case vmi.IsFinal():
		return nil
	}
	return fmt.Errorf("%w: the VM is %s and its data volume %s is ReadWriteOnce, held by its virt-launcher pod", ErrInUse, phaseOf(vmi), claim)
}

func phaseOf(vmi *kubevirtv1.VirtualMachineInstance) string {
	if vmi.Status.Phase == "" {
		return "starting"
	}
	return string(vmi.Status.Phase)
}

// ensureSecret returns the agent's Secret of w, made (owned by w) when
// there is none; one of that name w does not control is refused.
func (m *Manager) ensureSecret(ctx context.Context, w *vm.Wukong) (*corev1.Secret, error) {
	name := SecretName(w.Name)
	secrets := m.Secrets.Secrets(w.Namespace)
	s, err := secrets.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		var data map[string][]byte
		if data, err = NewAgentSecretData(ServerName(w.Namespace, w.Name)); err != nil {
			return nil, err
		}
		s, err = secrets.Create(ctx, &corev1.Secret{
			ObjectMeta: meta(w, name), Type: corev1.SecretTypeOpaque, Data: data,
		}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			s, err = secrets.Get(ctx, name, metav1.GetOptions{})
		}
	}
	if err != nil {
		return nil, fmt.Errorf("the helper agent's Secret %s/%s: %w", w.Namespace, name, err)
	}
	if err := controlled(w, "Secret", &s.ObjectMeta); err != nil {
		return nil, err
	}
	if len(s.Data[TokenKey]) == 0 || len(s.Data[CertKey]) == 0 || len(s.Data[KeyKey]) == 0 {
		return nil, fmt.Errorf("the helper agent's Secret %s/%s lacks %s, %s or %s: delete it and the server makes a new one", w.Namespace, name, TokenKey, CertKey, KeyKey)
	}
	return s, nil
}

// meta is the metadata of what the server makes for w: labelled with it
// and controlled by it, so it goes with the Wukong.
func meta(w *vm.Wukong, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: w.Namespace,
		Labels: map[string]string{v1alpha1.LabelWukong: w.Name, LabelComponent: Component},
		OwnerReferences: []metav1.OwnerReference{{APIVersion: v1alpha1.SchemeGroupVersion.String(), Kind: "Wukong",
			Name: w.Name, UID: w.UID, Controller: ptr.To(true)}}}
}

// controlled refuses an object named like w's that w does not control.
func controlled(w *vm.Wukong, kind string, o *metav1.ObjectMeta) error {
	ref := metav1.GetControllerOfNoCopy(o)
	if ref == nil || ref.Kind != "Wukong" || ref.UID != w.UID || o.Labels[v1alpha1.LabelWukong] != w.Name {
		return &owner.NotOwnedError{Kind: kind, Namespace: o.Namespace, Name: o.Name, Wukong: w.Name,
			Reason: "it is not controlled by the Wukong (made by someone else, or for an earlier Wukong of the same name)"}
	}
	return nil
}

// Pod renders w's helper pod: the agent of the server's image, serving the
// volume claim as the guest's mountPath, under the restricted Pod Security
// Standard.
func (m *Manager) Pod(w *vm.Wukong, mountPath, claim string) *corev1.Pod {
	if mountPath == "" {
		mountPath = v1alpha1.DefaultPVCMountPath
	}
	om := meta(w, PodName(w.Name))
	om.Annotations = map[string]string{AnnotationLastUsed: time.Now().UTC().Format(time.RFC3339)}
	return &corev1.Pod{
		ObjectMeta: om,
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyAlways,
			AutomountServiceAccountToken:  ptr.To(false),
			EnableServiceLinks:            ptr.To(false),
			TerminationGracePeriodSeconds: ptr.To[int64](30),
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](RunAsUser), RunAsGroup: ptr.To[int64](RunAsUser),
				FSGroup: ptr.To[int64](RunAsUser), FSGroupChangePolicy: ptr.To(corev1.FSGroupChangeOnRootMismatch),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: []corev1.Container{{
				Name:  "agent",
				Image: m.imageName(),
				Command: []string{AgentPath, "--root", mountPath + "=" + MountDir,
					"--token-file", SecretDir + "/" + TokenKey,
					"--tls-cert-file", SecretDir + "/" + CertKey, "--tls-key-file", SecretDir + "/" + KeyKey,
					"--listen", ":" + strconv.Itoa(Port)},
				Ports: []corev1.ContainerPort{{Name: "agent", ContainerPort: Port, Protocol: corev1.ProtocolTCP}},
				ReadinessProbe: &corev1.Probe{
					ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstrPort(), Scheme: corev1.URISchemeHTTPS}},
					PeriodSeconds: 2,
				},
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true), RunAsNonRoot: ptr.To(true),
					Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
				VolumeMounts: []corev1.VolumeMount{
					{Name: "data", MountPath: MountDir},
					{Name: "agent", MountPath: SecretDir, ReadOnly: true},
				},
			}},
			Volumes: []corev1.Volume{
				{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}},
				{Name: "agent", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: SecretName(w.Name), DefaultMode: ptr.To[int32](0o440)}}},
			},
		},
	}
}

func (m *Manager) imageName() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.Image
}

// ensurePod returns w's helper pod, made when there is none or the last
// one ended; one of that name w does not control is refused.
func (m *Manager) ensurePod(ctx context.Context, w *vm.Wukong, mountPath, claim string) (*corev1.Pod, error) {
	pods := m.Pods.Pods(w.Namespace)
	name := PodName(w.Name)
	for range 3 {
		pod, err := pods.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			pod, err = pods.Create(ctx, m.Pod(w, mountPath, claim), metav1.CreateOptions{})
			if err == nil {
				klog.V(2).InfoS("Made a helper pod for method pvc", "pod", klog.KObj(pod))
			}
			if apierrors.IsAlreadyExists(err) {
				continue // made by a concurrent request or replica
			}
		}
		if err != nil {
			return nil, fmt.Errorf("the helper pod %s/%s: %w", w.Namespace, name, err)
		}
		if err := controlled(w, "Pod", &pod.ObjectMeta); err != nil {
			return nil, err
		}
		if pod.DeletionTimestamp != nil {
			return nil, &StartingError{Pod: name, State: "the previous one is being deleted"}
		}
		if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			_ = pods.Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &pod.UID}})
			continue
		}
		return pod, nil
	}
	return nil, &StartingError{Pod: name, State: "it was replaced while starting"}
}

// waitReady waits, within ReadyTimeout, for pod to be ready with an address.
func (m *Manager) waitReady(ctx context.Context, pod *corev1.Pod) (*corev1.Pod, error) {
	every := m.PollInterval
	if every <= 0 {
		every = 250 * time.Millisecond
	}
	deadline := time.NewTimer(m.ReadyTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		if Ready(pod) {
			return pod, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-deadline.C:
			return nil, &StartingError{Pod: pod.Name, State: State(pod)}
		case <-tick.C:
		}
		cur, err := m.Pods.Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return nil, &StartingError{Pod: pod.Name, State: err.Error()}
		}
		if cur.UID != pod.UID || cur.DeletionTimestamp != nil {
			return nil, &StartingError{Pod: pod.Name, State: "it is being replaced"}
		}
		pod = cur
	}
}

// Ready says whether pod runs, is Ready and has an address.
func Ready(pod *corev1.Pod) bool {
	if pod.Status.Phase != corev1.PodRunning || pod.Status.PodIP == "" {
		return false
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// State says in a few words why pod is not ready: what the scheduler and
// the kubelet wrote into its status.
func State(pod *corev1.Pod) string {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
			return fmt.Sprintf("not scheduled (%s: %s)", c.Reason, c.Message)
		}
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil {
			msg := "phase " + string(pod.Status.Phase) + ", " + w.Reason
			if w.Message != "" {
				msg += ": " + w.Message
			}
			return msg
		}
	}
	if pod.Status.Phase == "" {
		return "not scheduled yet"
	}
	return "phase " + string(pod.Status.Phase) + ", not ready"
}

// lease returns a client of the ready pod, made anew when the pod, its
// address or the Secret changed.
func (m *Manager) lease(ctx context.Context, w *vm.Wukong, pod *corev1.Pod, secret *corev1.Secret) (*Lease, error) {
	key := string(pod.UID) + "/" + pod.Status.PodIP + "/" + secret.ResourceVersion
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.helpers == nil {
		m.helpers = map[types.UID]*helper{}
	}
	h := m.helpers[w.UID]
	if h == nil || h.key != key {
		c, err := agent.NewClient(agent.ClientConfig{
			Address:    net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(Port)),
			CAPEM:      secret.Data[CertKey],
			ServerName: ServerName(w.Namespace, w.Name),
			Token:      string(secret.Data[TokenKey]),
		})
		if err != nil {
			return nil, fmt.Errorf("the helper agent's Secret %s/%s: %w", secret.Namespace, secret.Name, err)
		}
		if h != nil && h.active == 0 {
			h.client.Close()
		}
		nh := &helper{namespace: w.Namespace, wukong: w.Name, pod: pod.UID, key: key, client: c}
		if h != nil {
			nh.stamped = h.stamped
		}
		h = nh
		m.helpers[w.UID] = h
	}
	h.active++
	h.lastUsed = time.Now()
	if time.Since(h.stamped) > m.IdleTimeout/4 {
		h.stamped = time.Now()
		go m.stamp(context.WithoutCancel(ctx), h.namespace, PodName(h.wukong), h.stamped)
	}
	return &Lease{Client: h.client, m: m, w: w.UID, h: h}, nil
}

// stamp writes when the pod was last used, for every replica's reaper.
func (m *Manager) stamp(ctx context.Context, namespace, name string, at time.Time) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, AnnotationLastUsed, at.UTC().Format(time.RFC3339))
	if _, err := m.Pods.Pods(namespace).Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil && !apierrors.IsNotFound(err) {
		klog.V(2).InfoS("Stamping a helper pod's last use", "pod", klog.KRef(namespace, name), "err", err)
	}
}

// Run reaps idle helper pods every IdleTimeout/4 (at least every second)
// until ctx ends.
func (m *Manager) Run(ctx context.Context) {
	every := max(m.IdleTimeout/4, time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.Reap(ctx)
		}
	}
}

// Reap deletes the helper pods no transfer used for IdleTimeout: this
// server's idle ones, and those of other replicas or earlier runs whose
// last-used stamp is that old. Pods with transfers in flight here get a
// fresh stamp instead.
func (m *Manager) Reap(ctx context.Context) {
	now := time.Now()
	busy := map[string]bool{}
	m.mu.Lock()
	for uid, h := range m.helpers {
		k := h.namespace + "/" + PodName(h.wukong)
		switch {
		case h.active > 0:
			busy[k] = true
			if now.Sub(h.stamped) > m.IdleTimeout/4 {
				h.stamped = now
				go m.stamp(ctx, h.namespace, PodName(h.wukong), now)
			}
		case now.Sub(h.lastUsed) < m.IdleTimeout:
			busy[k] = true
		default:
			h.client.Close()
			delete(m.helpers, uid)
		}
	}
	m.mu.Unlock()
	sel := labels.SelectorFromSet(labels.Set{LabelComponent: Component}).String()
	list, err := m.Pods.Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		klog.V(2).InfoS("Listing helper pods to reap", "err", err)
		return
	}
	for i := range list.Items {
		p := &list.Items[i]
		if busy[p.Namespace+"/"+p.Name] || p.DeletionTimestamp != nil {
			continue
		}
		last := p.CreationTimestamp.Time
		if t, err := time.Parse(time.RFC3339, p.Annotations[AnnotationLastUsed]); err == nil && t.After(last) {
			last = t
		}
		if now.Sub(last) < m.IdleTimeout {
			continue
		}
		err := m.Pods.Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &p.UID}})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			klog.V(2).InfoS("Deleting an idle helper pod", "pod", klog.KObj(p), "err", err)
			continue
		}
		klog.V(2).InfoS("Deleted an idle helper pod", "pod", klog.KObj(p), "idle", now.Sub(last).Round(time.Second))
	}
}

func intstrPort() intstr.IntOrString { return intstr.FromInt32(Port) }
