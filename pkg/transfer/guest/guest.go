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

// Package guest finds how to reach a Wukong's guest: its address from the
// KubeVirt VirtualMachineInstance of the same name, once it is known to be
// the instance of the Wukong's own VirtualMachine, and its SSH credentials
// and host keys from the Secret its sshConfig names. It reads the Kubernetes
// API only; dialing is pkg/transfer/ssh's job.
package guest

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	kubevirtv1 "kubevirt.io/api/core/v1"
	kubevirtclient "kubevirt.io/client-go/kubevirt/typed/core/v1"

	"github.com/novasphere/wukong/pkg/apis/vm"
	"github.com/novasphere/wukong/pkg/transfer/owner"
	"github.com/novasphere/wukong/pkg/transfer/ssh"
)

// Secret keys: kubernetes.io/ssh-auth holds the private key under
// ssh-privatekey; known_hosts is Wukong's addition for pinned host keys.
const (
	PrivateKeyKey = corev1.SSHAuthPrivateKey
	KnownHostsKey = "known_hosts"
)

var (
	// ErrNotRunning means the VM has no running instance or no address yet.
	ErrNotRunning = errors.New("the VM is not running")
	// ErrNoInstance is ErrNotRunning when the VM has no instance at all:
	// stopped, or not started yet.
	ErrNoInstance = fmt.Errorf("%w: it has no VirtualMachineInstance", ErrNotRunning)
	// ErrMisconfigured means the Wukong's file transfer settings cannot work
	// as they are (missing Secret or key, unsupported method).
	ErrMisconfigured = errors.New("file transfer is misconfigured")
)

// Locator resolves Wukongs to SSH targets.
type Locator struct {
	VMIs kubevirtclient.VirtualMachineInstancesGetter
	// VMs are read to check that the VMI is the Wukong's own.
	VMs     kubevirtclient.VirtualMachinesGetter
	Secrets corev1client.SecretsGetter
	// Cache, when set, serves the VMI and its VM from informers, so that
	// a files request does not wait on kube-apiserver for them; whatever
	// it does not show as a running instance of the Wukong's own VM is
	// read live (see cachedAddress).
	Cache *Cache
}

// Cache holds the informers' copies of the VirtualMachines and
// VirtualMachineInstances labelled with a Wukong (the VM controller labels
// both, and an unlabelled one is never a Wukong's own), keyed
// namespace/name.
type Cache struct {
	VMIs, VMs cache.Store
}

// SSHTarget returns how to reach w's guest over SSH.
func (l *Locator) SSHTarget(ctx context.Context, w *vm.Wukong) (ssh.Target, error) {
	ft := w.Spec.FileTransfer
	if ft == nil || ft.SSHConfig == nil {
		return ssh.Target{}, fmt.Errorf("%w: spec.fileTransfer.sshConfig is not set", ErrMisconfigured)
	}
	// The Secret is read while the VMI and its VM are (from the informers'
	// caches when they have them): each live read is a round trip to
	// kube-apiserver, and every files request pays for them.
	// The key's errors are reported first: while it is missing the VM
	// controller does not make the VM (cloud-init needs its public half),
	// and the answer should say what to create rather than that the VM is
	// not running.
	type addrRead struct {
		addr string
		err  error
	}
	addrc := make(chan addrRead, 1)
	go func() {
		addr, _, err := l.address(ctx, w)
		addrc <- addrRead{addr, err}
	}()
	sec, err := l.keySecret(ctx, w.Namespace, ft.SSHConfig.KeySecret)
	ar := <-addrc
	if apierrors.IsNotFound(err) {
		return ssh.Target{}, fmt.Errorf("%w: the Secret %q named by spec.fileTransfer.sshConfig.keySecret does not exist in namespace %s", ErrMisconfigured, ft.SSHConfig.KeySecret, w.Namespace)
	}
	if err != nil {
		return ssh.Target{}, fmt.Errorf("reading the SSH key Secret: %w", err)
	}
	key := sec.Data[PrivateKeyKey]
	if len(key) == 0 {
		return ssh.Target{}, fmt.Errorf("%w: the Secret %q has no %s key (create it with type kubernetes.io/ssh-auth)", ErrMisconfigured, sec.Name, PrivateKeyKey)
	}
	addr, err := ar.addr, ar.err
	if err != nil {
		return ssh.Target{}, err
	}
	t := ssh.Target{
		Key:        w.Namespace + "/" + w.Name,
		Address:    addr,
		Port:       22,
		User:       ft.SSHConfig.User,
		PrivateKey: key,
		KnownHosts: sec.Data[KnownHostsKey],
	}
	if ft.SSHConfig.Port != nil {
		t.Port = int(*ft.SSHConfig.Port)
	}
	if w.Status.FileTransfer != nil {
		t.PinnedHostKey = w.Status.FileTransfer.HostKey
	}
	return t, nil
}

// keySecret reads the key Secret from kube-apiserver's watch cache
// (resourceVersion "0": no etcd read behind it), and live when the cache
// has no such Secret or no key in it, so a Secret created or fixed a moment
// ago is not refused. The server may only get Secrets by name (no informer
// holds them all), so this is still a round trip, but a shorter one. A copy
// a watch's delay behind is safe: it is the Secret the Wukong names, whose
// author's right to read it was checked when it was named, and a key
// rotated or a known_hosts entry removed is in force once the cache has
// caught up, as it would be for a request that came a moment later.
func (l *Locator) keySecret(ctx context.Context, namespace, name string) (*corev1.Secret, error) {
	sec, err := l.Secrets.Secrets(namespace).Get(ctx, name, metav1.GetOptions{ResourceVersion: "0"})
	if (err == nil && len(sec.Data[PrivateKeyKey]) > 0) || (err != nil && !apierrors.IsNotFound(err)) {
		return sec, err
	}
	return l.Secrets.Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
}

// address is the first IP of the running VMI of the same name, if it is
// the instance of the Wukong's own VirtualMachine (else an
// *owner.NotOwnedError): a VMI anyone made under that name must not get
// the Wukong's key and files.
func (l *Locator) address(ctx context.Context, w *vm.Wukong) (string, time.Time, error) {
	if addr, since, ok := l.cachedAddress(w); ok {
		return addr, since, nil
	}
	// The VM is read while the VMI is (one round trip to kube-apiserver
	// instead of two), and judged after it, as owner.Checker.VMI would.
	type vmRead struct {
		vm  *kubevirtv1.VirtualMachine
		err error
	}
	vmc := make(chan vmRead, 1)
	go func() {
		m, err := (&owner.Checker{VMs: l.VMs}).VM(ctx, w)
		vmc <- vmRead{m, err}
	}()
	vmi, err := l.VMIs.VirtualMachineInstances(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", time.Time{}, fmt.Errorf("%w %s/%s", ErrNoInstance, w.Namespace, w.Name)
	}
	if err != nil {
		return "", time.Time{}, fmt.Errorf("reading the VirtualMachineInstance: %w", err)
	}
	if err := owner.VMIOf(w, vmi, func() (*kubevirtv1.VirtualMachine, error) { r := <-vmc; return r.vm, r.err }); err != nil {
		return "", time.Time{}, err
	}
	if vmi.Status.Phase != kubevirtv1.Running {
		return "", time.Time{}, fmt.Errorf("%w: its VirtualMachineInstance is %s", ErrNotRunning, phaseOrPending(vmi.Status.Phase))
	}
	for _, iface := range vmi.Status.Interfaces {
		if iface.IP != "" {
			return iface.IP, runningSince(vmi), nil
		}
	}
	return "", time.Time{}, fmt.Errorf("%w: its VirtualMachineInstance has no IP address yet", ErrNotRunning)
}

// runningSince is when vmi entered its phase Running, as KubeVirt records
// it, or when it was created if that is not recorded.
func runningSince(vmi *kubevirtv1.VirtualMachineInstance) time.Time {
	for _, t := range vmi.Status.PhaseTransitionTimestamps {
		if t.Phase == kubevirtv1.Running {
			return t.PhaseTransitionTimestamp.Time
		}
	}
	return vmi.CreationTimestamp.Time
}

// cachedAddress is address from the informers' copies, when they show a
// running VMI with an IP controlled by the Wukong's own VM. The same
// ownership checks judge the copies as judge live reads, and only a yes is
// taken from them: a missing, unowned or stopped object (not synced yet,
// just created, or a cache behind) is read live, so a cache never refuses
// what kube-apiserver would allow. A yes from a cache behind is safe: UIDs
// are never reused, so a copy whose controller chain (VMI -> VM uid ->
// Wukong uid) checks out was this Wukong's own instance, and the only
// staleness left is an address that stopped serving within the watch's
// delay, which the dial finds as it finds a VM stopped after a live read,
// and the host key pinned in the Wukong's status (or its known_hosts)
// refuses anything else that answers there, as it does when an address
// changes hands between a live read and the dial.
func (l *Locator) cachedAddress(w *vm.Wukong) (string, time.Time, bool) {
	if l.Cache == nil {
		return "", time.Time{}, false
	}
	key := w.Namespace + "/" + w.Name
	vmi, ok := cached[*kubevirtv1.VirtualMachineInstance](l.Cache.VMIs, key)
	if !ok || vmi.Status.Phase != kubevirtv1.Running {
		return "", time.Time{}, false
	}
	m, ok := cached[*kubevirtv1.VirtualMachine](l.Cache.VMs, key)
	if !ok || owner.VMIOf(w, vmi, func() (*kubevirtv1.VirtualMachine, error) { return m, owner.VMOf(w, m) }) != nil {
		return "", time.Time{}, false
	}
	for _, iface := range vmi.Status.Interfaces {
		if iface.IP != "" {
			return iface.IP, runningSince(vmi), true
		}
	}
	return "", time.Time{}, false
}

// cached is the object under key in s, if s holds one of type T.
func cached[T any](s cache.Store, key string) (T, bool) {
	var zero T
	if s == nil {
		return zero, false
	}
	o, ok, err := s.GetByKey(key)
	if err != nil || !ok {
		return zero, false
	}
	t, ok := o.(T)
	return t, ok
}

func phaseOrPending(p kubevirtv1.VirtualMachineInstancePhase) string {
	if p == "" {
		return "Pending"
	}
	return string(p)
}
