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

// A stand-in for the kubelet (and the scheduler and attach/detach
// controller, as far as they decide whether a pod starts) for the helper
// pods of method pvc (pkg/transfer/helperpod), not any of them. It mirrors,
// in kubernetes/kubernetes:
//
//   - pkg/scheduler/framework/plugins/volumebinding/volume_binding.go
//     (PreFilter): a pod whose PVC does not exist, or is not Bound, is not
//     scheduled: PodScheduled False, reason Unschedulable, "0/1 nodes are
//     available: persistentvolumeclaim \"<pvc>\" not found." or "... pod has
//     unbound immediate PersistentVolumeClaims.", and a FailedScheduling
//     event from default-scheduler;
//   - pkg/controller/volume/attachdetach/reconciler/reconciler.go
//     (reportMultiAttachError): a ReadWriteOnce volume that a running pod
//     already uses is not attached for another pod (the stand-in's pods are
//     each on a node of their own): the pod stays Pending with its
//     container waiting in ContainerCreating (pkg/kubelet/kubelet_pods.go),
//     and a FailedAttachVolume event from attachdetach-controller says
//     "Multi-Attach error for volume \"<pvc>\" Volume is already used by
//     pod(s) <pods>";
//   - pkg/kubelet/kubelet_pods.go, pkg/kubelet/status/status_manager.go,
//     pkg/kubelet/prober: once the volumes are there, the container runs
//     (phase Running, podIP, containerStatuses running) and the pod turns
//     Ready (PodScheduled, Initialized, ContainersReady, Ready True) when its
//     HTTPS readiness probe answers; deleting the pod stops the container.
//
// The container is the real wukong-agent (WUKONG_AGENT_BIN) run as a local
// process on a fresh loopback address 127.0.240.N (the pod's IP), with the
// pod's command; its volumes are local directories: a PVC's is
// FilesystemVolume(namespace, pvc), a Secret's holds the Secret's keys as
// files, as the kubelet writes them. Left out: images, restarts, resources,
// fsGroup ownership changes, the node and its binding, security contexts.

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	cdiv1 "kubevirt.io/containerized-data-importer-api/pkg/apis/core/v1beta1"

	"github.com/novasphere/wukong/pkg/apis/vm/v1alpha1"
	"github.com/novasphere/wukong/pkg/generated/clientset/versioned"
	"github.com/novasphere/wukong/pkg/transfer/helperpod"
)

// filesystemVolumes holds the directory that plays each filesystem PVC,
// by namespace/pvc; made on first use, like a freshly formatted volume.
var filesystemVolumes = struct {
	sync.Mutex
	root string
	m    map[string]string
}{m: map[string]string{}}

// FilesystemVolume is the directory that holds the files of the filesystem
// PVC namespace/pvc, made empty on first use.
func FilesystemVolume(namespace, pvc string) (string, error) {
	filesystemVolumes.Lock()
	defer filesystemVolumes.Unlock()
	if d := filesystemVolumes.m[namespace+"/"+pvc]; d != "" {
		return d, nil
	}
	if filesystemVolumes.root == "" {
		root, err := os.MkdirTemp("", "standin-volumes-")
		if err != nil {
			return "", err
		}
		filesystemVolumes.root = root
	}
	d := filepath.Join(filesystemVolumes.root, namespace, pvc)
	if err := os.MkdirAll(d, 0o755); err != nil {
		return "", err
	}
	filesystemVolumes.m[namespace+"/"+pvc] = d
	return d, nil
}

// Kubelet runs the helper pods of method pvc (see the top of this file).
type Kubelet struct {
	kube     kubernetes.Interface
	agentBin string
	pods     cache.Indexer
	workDir  string
	next     atomic.Int32

	done chan struct{} // closed once every process is stopped

	mu    sync.Mutex
	procs map[types.UID]*helperProc
	// Started counts the helper pods started, by namespace/name.
	started map[string]int
	warned  map[string]bool
}

type helperProc struct {
	cmd  *exec.Cmd
	done chan struct{}
	ip   string
}

// StartKubelet runs the stand-in for the helper pods of namespace until
// ctx ends, with the wukong-agent binary at agentBin; Done is closed once
// it stopped every process it started.
func StartKubelet(ctx context.Context, cfg *rest.Config, agentBin, namespace string) (*Kubelet, error) {
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "standin-kubelet-")
	if err != nil {
		return nil, err
	}
	k := &Kubelet{kube: kube, agentBin: agentBin, workDir: dir, done: make(chan struct{}),
		procs: map[types.UID]*helperProc{}, started: map[string]int{}, warned: map[string]bool{}}
	lw := cache.NewFilteredListWatchFromClient(kube.CoreV1().RESTClient(), "pods", namespace, func(o *metav1.ListOptions) {
		o.LabelSelector = helperpod.LabelComponent + "=" + helperpod.Component
	})
	inf := cache.NewSharedIndexInformer(lw, &corev1.Pod{}, 0, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	go inf.Run(ctx.Done())
	k.pods = inf.GetIndexer()
	go func() {
		defer close(k.done)
		defer func() { _ = os.RemoveAll(dir) }()
		defer k.stopAll()
		if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
			return
		}
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			k.sync(ctx)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return k, nil
}

// Done is closed once the stand-in stopped (ctx ended) and every process
// it started is gone.
func (k *Kubelet) Done() <-chan struct{} { return k.done }

// Started is how many times the helper pod namespace/name was started.
func (k *Kubelet) Started(namespace, name string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.started[namespace+"/"+name]
}

// Running says whether a process plays namespace/name now.
func (k *Kubelet) Running(namespace, name string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	for uid, p := range k.procs {
		if pod := k.podByUID(uid); pod != nil && pod.Namespace == namespace && pod.Name == name {
			select {
			case <-p.done:
			default:
				return true
			}
		}
	}
	return false
}

func (k *Kubelet) podByUID(uid types.UID) *corev1.Pod {
	for _, p := range cachedList[corev1.Pod](k.pods, "") {
		if p.UID == uid {
			return p
		}
	}
	return nil
}

func (k *Kubelet) sync(ctx context.Context) {
	live := map[types.UID]bool{}
	for _, pod := range cachedList[corev1.Pod](k.pods, "") {
		if pod.DeletionTimestamp != nil {
			continue
		}
		live[pod.UID] = true
		k.mu.Lock()
		p, running := k.procs[pod.UID]
		if running {
			select {
			case <-p.done:
				// The container exited: the kubelet restarts it
				// (restartPolicy Always).
				delete(k.procs, pod.UID)
				running = false
			default:
			}
		}
		k.mu.Unlock()
		if !running {
			k.start(ctx, pod)
		}
	}
	// A deleted pod's container is stopped.
	k.mu.Lock()
	for uid, p := range k.procs {
		if !live[uid] {
			stopProc(p)
			delete(k.procs, uid)
		}
	}
	k.mu.Unlock()
}

func (k *Kubelet) stopAll() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for uid, p := range k.procs {
		stopProc(p)
		delete(k.procs, uid)
	}
}

func stopProc(p *helperProc) {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// start runs pod's container once its volumes can be had, or writes why
// it cannot start.
func (k *Kubelet) start(ctx context.Context, pod *corev1.Pod) {
	mounts := map[string]string{} // volume name → local directory
	for _, v := range pod.Spec.Volumes {
		switch {
		case v.PersistentVolumeClaim != nil:
			name := v.PersistentVolumeClaim.ClaimName
			pvc, err := k.kube.CoreV1().PersistentVolumeClaims(pod.Namespace).Get(ctx, name, metav1.GetOptions{})
			switch {
			case apierrors.IsNotFound(err):
				k.unschedulable(ctx, pod, fmt.Sprintf("0/1 nodes are available: persistentvolumeclaim %q not found.", name))
				return
			case err != nil:
				return
			case pvc.Status.Phase != corev1.ClaimBound:
				k.unschedulable(ctx, pod, "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims.")
				return
			}
			if users := k.otherUsers(ctx, pod, pvc); len(users) > 0 {
				k.multiAttach(ctx, pod, name, users)
				return
			}
			d, err := FilesystemVolume(pod.Namespace, name)
			if err != nil {
				return
			}
			mounts[v.Name] = d
		case v.Secret != nil:
			s, err := k.kube.CoreV1().Secrets(pod.Namespace).Get(ctx, v.Secret.SecretName, metav1.GetOptions{})
			if err != nil {
				return // the kubelet retries the mount (FailedMount)
			}
			d := filepath.Join(k.workDir, string(pod.UID), v.Name)
			if err := os.MkdirAll(d, 0o700); err != nil {
				return
			}
			for key, b := range s.Data {
				if err := os.WriteFile(filepath.Join(d, key), b, 0o400); err != nil {
					return
				}
			}
			mounts[v.Name] = d
		}
	}
	if len(pod.Spec.Containers) == 0 || len(pod.Spec.Containers[0].Command) == 0 {
		return
	}
	c := pod.Spec.Containers[0]
	port := 0
	if len(c.Ports) > 0 {
		port = int(c.Ports[0].ContainerPort)
	}
	ip, err := k.freeAddress(port)
	if err != nil {
		return
	}
	args := localArgs(c, mounts, ip)
	cmd := exec.Command(k.agentBin, args...)
	// Killed with the test binary, whatever way it ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	logf, err := os.Create(filepath.Join(k.workDir, pod.Namespace+"_"+pod.Name+"_"+string(pod.UID)+".log"))
	if err == nil {
		cmd.Stdout, cmd.Stderr = logf, logf
	}
	if err := cmd.Start(); err != nil {
		return
	}
	p := &helperProc{cmd: cmd, done: make(chan struct{}), ip: ip}
	go func() {
		_ = cmd.Wait()
		if logf != nil {
			logf.Close()
		}
		close(p.done)
	}()
	k.mu.Lock()
	k.procs[pod.UID] = p
	k.started[pod.Namespace+"/"+pod.Name]++
	k.mu.Unlock()
	go k.run(ctx, pod, p, c)
}

// freeAddress is the next loopback address 127.0.240.N on which port is
// free: the pod's IP.
func (k *Kubelet) freeAddress(port int) (string, error) {
	for range 240 {
		ip := fmt.Sprintf("127.0.240.%d", 10+k.next.Add(1)%240)
		l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
		if err == nil {
			l.Close()
			return ip, nil
		}
	}
	return "", fmt.Errorf("no free address for port %d", port)
}

// localArgs is the container's command for this machine: paths under its
// volume mounts go to the local directories, and the agent listens on the
// pod's address.
func localArgs(c corev1.Container, mounts map[string]string, ip string) []string {
	args := slices.Clone(c.Command[1:])
	for i, a := range args {
		for _, m := range c.VolumeMounts {
			d, ok := mounts[m.Name]
			if !ok {
				continue
			}
			if a == m.MountPath || strings.HasPrefix(a, m.MountPath+"/") {
				a = d + strings.TrimPrefix(a, m.MountPath)
			} else if before, after, ok := strings.Cut(a, "="+m.MountPath); ok && (after == "" || strings.HasPrefix(after, "/")) {
				a = before + "=" + d + after // --root GUEST=LOCAL
			}
		}
		if i > 0 && args[i-1] == "--listen" && strings.HasPrefix(a, ":") {
			a = ip + a
		}
		args[i] = a
	}
	return args
}

// run marks the pod Running, then Ready once its probe answers, as the
// kubelet's status manager and prober do.
func (k *Kubelet) run(ctx context.Context, pod *corev1.Pod, p *helperProc, c corev1.Container) {
	now := metav1.Now()
	set := func(ready bool) {
		cur, err := k.kube.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil || cur.UID != pod.UID {
			return
		}
		st := corev1.ConditionFalse
		if ready {
			st = corev1.ConditionTrue
		}
		cur.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: p.ip, PodIPs: []corev1.PodIP{{IP: p.ip}}, HostIP: "127.0.0.1", StartTime: &now,
			Conditions: []corev1.PodCondition{
				{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
				{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: now},
				{Type: corev1.ContainersReady, Status: st, LastTransitionTime: metav1.Now()},
				{Type: corev1.PodReady, Status: st, LastTransitionTime: metav1.Now()},
			},
			ContainerStatuses: []corev1.ContainerStatus{{Name: c.Name, Image: c.Image, Ready: ready, Started: ptr.To(true),
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}}},
		}
		_, _ = k.kube.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
	}
	set(false)
	port := 0
	if len(c.Ports) > 0 {
		port = int(c.Ports[0].ContainerPort)
	}
	// The kubelet's HTTPS probe does not verify the certificate.
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // as the kubelet's prober
	url := "https://" + net.JoinHostPort(p.ip, strconv.Itoa(port)) + "/healthz"
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.done:
			return
		case <-time.After(100 * time.Millisecond):
		}
		resp, err := hc.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				set(true)
				return
			}
		}
	}
}

// otherUsers are the running pods other than pod that use the
// ReadWriteOnce pvc (none for a ReadWriteMany one).
func (k *Kubelet) otherUsers(ctx context.Context, pod *corev1.Pod, pvc *corev1.PersistentVolumeClaim) []string {
	if slices.Contains(pvc.Spec.AccessModes, corev1.ReadWriteMany) {
		return nil
	}
	all, err := k.kube.CoreV1().Pods(pod.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return []string{"(unknown: " + err.Error() + ")"}
	}
	var users []string
	for _, o := range all.Items {
		if o.UID == pod.UID || o.DeletionTimestamp != nil || o.Status.Phase == corev1.PodSucceeded || o.Status.Phase == corev1.PodFailed {
			continue
		}
		for _, v := range o.Spec.Volumes {
			if v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == pvc.Name {
				users = append(users, o.Name)
			}
		}
	}
	return users
}

// unschedulable is the scheduler's answer for a pod it cannot place.
func (k *Kubelet) unschedulable(ctx context.Context, pod *corev1.Pod, msg string) {
	cur := pod.DeepCopy()
	cur.Status.Phase = corev1.PodPending
	cur.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse,
		Reason: corev1.PodReasonUnschedulable, Message: msg, LastTransitionTime: metav1.Now()}}
	k.writePending(ctx, pod, cur, "FailedScheduling", "default-scheduler", msg)
}

// multiAttach is the attach/detach controller's refusal: the pod waits in
// ContainerCreating.
func (k *Kubelet) multiAttach(ctx context.Context, pod *corev1.Pod, claim string, users []string) {
	cur := pod.DeepCopy()
	now := metav1.Now()
	cur.Status.Phase = corev1.PodPending
	cur.Status.HostIP = "127.0.0.1"
	cur.Status.Conditions = []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.ContainersReady, Status: corev1.ConditionFalse, Reason: "ContainersNotReady", Message: "containers with unready status: [" + pod.Spec.Containers[0].Name + "]", LastTransitionTime: now},
		{Type: corev1.PodReady, Status: corev1.ConditionFalse, Reason: "ContainersNotReady", Message: "containers with unready status: [" + pod.Spec.Containers[0].Name + "]", LastTransitionTime: now},
	}
	cur.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: pod.Spec.Containers[0].Name, Image: pod.Spec.Containers[0].Image,
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}}}
	k.writePending(ctx, pod, cur, "FailedAttachVolume", "attachdetach-controller",
		fmt.Sprintf("Multi-Attach error for volume %q Volume is already used by pod(s) %s", claim, strings.Join(users, ", ")))
}

// writePending writes cur's status once, and the event once per pod.
func (k *Kubelet) writePending(ctx context.Context, pod, cur *corev1.Pod, reason, component, msg string) {
	k.mu.Lock()
	key := string(pod.UID) + "/" + reason
	seen := k.warned[key]
	k.warned[key] = true
	k.mu.Unlock()
	if seen {
		return
	}
	_, _ = k.kube.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
	now := metav1.Now()
	_, _ = k.kube.CoreV1().Events(pod.Namespace).Create(ctx, &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{GenerateName: pod.Name + ".", Namespace: pod.Namespace},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID, APIVersion: "v1"},
		Reason:         reason, Message: msg, Type: corev1.EventTypeWarning, Source: corev1.EventSource{Component: component},
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
	}, metav1.CreateOptions{})
}

// ProvisionFilesystemVolume does for a Wukong's filesystem DataVolume
// dvName what wukong-apiserver's VM controller, virt-controller, CDI and
// the CSI driver do together, for suites that run none of them: the
// Wukong's VirtualMachine (Halted, unless one exists), the DataVolume
// controlled by it and labelled like it, its PVC of the access modes
// controlled by the DataVolume and Bound, and the DataVolume Succeeded (a
// blank volume). It returns the directory that holds the volume's files.
func ProvisionFilesystemVolume(ctx context.Context, cfg *rest.Config, namespace, wukong, dvName string, modes []corev1.PersistentVolumeAccessMode) (string, error) {
	c, err := newKVClients(cfg)
	if err != nil {
		return "", err
	}
	wc, err := versioned.NewForConfig(cfg)
	if err != nil {
		return "", err
	}
	w, err := wc.VmV1alpha1().Wukongs(namespace).Get(ctx, wukong, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("the Wukong of the volume: %w", err)
	}
	labels := map[string]string{v1alpha1.LabelWukong: wukong}
	vm := &kubevirtv1.VirtualMachine{
		ObjectMeta: metav1.ObjectMeta{Name: wukong, Namespace: namespace, Labels: labels,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: v1alpha1.SchemeGroupVersion.String(), Kind: "Wukong", Name: wukong, UID: w.UID, Controller: ptr.To(true)}}},
		Spec: kubevirtv1.VirtualMachineSpec{RunStrategy: ptr.To(kubevirtv1.RunStrategyHalted),
			Template: &kubevirtv1.VirtualMachineInstanceTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"kubevirt.io/vm": wukong, v1alpha1.LabelWukong: wukong}}}},
	}
	err = retryTimeouts(ctx, func(ctx context.Context) error {
		got, err := c.kubevirt.KubevirtV1().VirtualMachines(namespace).Create(ctx, vm, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			got, err = c.kubevirt.KubevirtV1().VirtualMachines(namespace).Get(ctx, wukong, metav1.GetOptions{})
		}
		if err == nil {
			vm = got
		}
		return err
	})
	if err != nil {
		return "", err
	}
	dv := &cdiv1.DataVolume{
		ObjectMeta: metav1.ObjectMeta{Name: dvName, Namespace: namespace, Labels: labels,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(vm, kubevirtv1.VirtualMachineGroupVersionKind)}},
		Spec: cdiv1.DataVolumeSpec{Source: &cdiv1.DataVolumeSource{Blank: &cdiv1.DataVolumeBlankImage{}},
			Storage: &cdiv1.StorageSpec{AccessModes: modes, VolumeMode: ptr.To(corev1.PersistentVolumeFilesystem)}},
	}
	err = retryTimeouts(ctx, func(ctx context.Context) error {
		got, err := c.cdi.CdiV1beta1().DataVolumes(namespace).Create(ctx, dv, metav1.CreateOptions{})
		if err == nil {
			dv = got
		}
		return err
	})
	if err != nil {
		return "", err
	}
	pvc, err := c.kube.CoreV1().PersistentVolumeClaims(namespace).Create(ctx, &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: dvName, Namespace: namespace, Labels: map[string]string{"app": "containerized-data-importer"},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(dv, cdiv1.SchemeGroupVersion.WithKind("DataVolume"))}},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: modes, VolumeMode: ptr.To(corev1.PersistentVolumeFilesystem),
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	pvc.Status.Phase, pvc.Status.AccessModes = corev1.ClaimBound, modes
	if _, err := c.kube.CoreV1().PersistentVolumeClaims(namespace).UpdateStatus(ctx, pvc, metav1.UpdateOptions{}); err != nil {
		return "", err
	}
	dv.Status.Phase, dv.Status.Progress = cdiv1.Succeeded, "100.0%"
	if _, err := c.cdi.CdiV1beta1().DataVolumes(namespace).UpdateStatus(ctx, dv, metav1.UpdateOptions{}); err != nil {
		return "", err
	}
	return FilesystemVolume(namespace, dvName)
}

// RunLauncherPod plays the virt-launcher pod of a running VM that uses
// claim: what holds a ReadWriteOnce volume.
func RunLauncherPod(ctx context.Context, cfg *rest.Config, namespace, vmName, claim string) (string, error) {
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return "", err
	}
	p, err := kube.CoreV1().Pods(namespace).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "virt-launcher-" + vmName + "-", Namespace: namespace,
			Labels: map[string]string{kubevirtv1.AppLabel: "virt-launcher", kubevirtv1.DeprecatedVirtualMachineNameLabel: vmName}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "compute", Image: "quay.io/kubevirt/virt-launcher"}},
			Volumes: []corev1.Volume{{Name: "files", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}}}},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	p.Status.Phase = corev1.PodRunning
	_, err = kube.CoreV1().Pods(namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{})
	return p.Name, err
}
