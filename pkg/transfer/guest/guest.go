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
}

// SSHTarget returns how to reach w's guest over SSH.
func (l *Locator) SSHTarget(ctx context.Context, w *vm.Wukong) (ssh.Target, error) {
	ft := w.Spec.FileTransfer
	if ft == nil || ft.SSHConfig == nil {
		return ssh.Target{}, fmt.Errorf("%w: spec.fileTransfer.sshConfig is not set", ErrMisconfigured)
	}
	// The Secret is read while the VMI and its VM are: each read is a round
	// trip to kube-apiserver, and every files request pays for all three.
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
	sec, err := l.Secrets.Secrets(w.Namespace).Get(ctx, ft.SSHConfig.KeySecret, metav1.GetOptions{})
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

// address is the first IP of the running VMI of the same name, if it is
// the instance of the Wukong's own VirtualMachine (else an
// *owner.NotOwnedError): a VMI anyone made under that name must not get
// the Wukong's key and files.
func (l *Locator) address(ctx context.Context, w *vm.Wukong) (string, time.Time, error) {
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

func phaseOrPending(p kubevirtv1.VirtualMachineInstancePhase) string {
	if p == "" {
		return "Pending"
	}
	return string(p)
}
