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

// A stand-in for a guest's first boot, for method http: the part of
// cloud-init that installs wukong-agent. Not cloud-init, and no VM boots. It
// follows
//
//   - kubevirt/kubevirt pkg/cloud-init/cloud-init.go: a VMI's
//     cloudInitNoCloud volume carries userData inline or from the Secret
//     userDataSecretRef names, read under the key "userdata", else
//     "userData" (a missing Secret or key is a failed boot here, where
//     KubeVirt refuses to start the VMI);
//   - cloud-init's NoCloud datasource and its cc_write_files and
//     cc_runcmd modules: a "#cloud-config" document; write_files entries
//     (path, content, encoding b64/base64, permissions, defer) written in
//     order, a later entry for a path replacing an earlier one; runcmd run
//     once, after every file is written.
//
// Each file lands under a per-VMI directory that plays the guest's "/".
// Of runcmd, only the controller's agent install script is played: instead
// of mounting the ISO labelled WUKONGAGENT, checking SHA256SUMS and starting
// the systemd unit, the stand-in runs the unit's ExecStart with the real
// wukong-agent binary ($WUKONG_AGENT_BIN), its --config rewritten only as
// far as a guest on this machine needs: listen on the VMI's loopback
// address (127.0.0.N, as the sshd guests do) at the configured port, and
// the guest's paths (roots, token, certificate, key) under the per-VMI
// directory. Left out: the ISO and its checksums, systemd (no restart), any
// other runcmd, users, bootcmd, per-boot modules, and a second boot (the
// agent stops when its VMI goes; a new VMI is a new first boot).

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	kubevirtv1 "kubevirt.io/api/core/v1"
	kubevirtclient "kubevirt.io/client-go/kubevirt"
	"sigs.k8s.io/yaml"
)

// EnvWukongAgentBin names the wukong-agent binary the guests run.
const EnvWukongAgentBin = "WUKONG_AGENT_BIN"

// agentInstallScript is the script the VM controller's runcmd runs
// (pkg/controller/virtualmachine/render_agent.go, AgentInstallFile).
const agentInstallScript = "/usr/local/lib/wukong-agent/install.sh"

// AgentGuests boots, for every running VMI whose cloud-init installs
// wukong-agent, a guest: its files written, its agent running.
type AgentGuests struct {
	bin      string
	dir      string
	kube     kubernetes.Interface
	kubevirt kubevirtclient.Interface

	mu     sync.Mutex
	guests map[types.UID]*AgentGuest
	failed map[types.UID]error
}

// AgentGuest is one booted guest.
type AgentGuest struct {
	Namespace, Name string
	UID             types.UID
	// Root is the directory that plays the guest's "/": write_files wrote
	// under it.
	Root string
	// Addr is where the agent listens: the VMI's address and its port.
	Addr string
	// Roots maps each guest root the agent serves to its local directory.
	Roots map[string]string

	cmd    *exec.Cmd
	exited chan struct{}
	log    string
}

// StartAgentGuests starts the stand-in until ctx ends; bin is the
// wukong-agent binary ("" for $WUKONG_AGENT_BIN), dir where the guests'
// directories go.
func StartAgentGuests(ctx context.Context, cfg *rest.Config, bin, dir string) (*AgentGuests, error) {
	if bin == "" {
		bin = os.Getenv(EnvWukongAgentBin)
	}
	if bin == "" {
		return nil, fmt.Errorf("no wukong-agent binary: set $%s", EnvWukongAgentBin)
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	kv, err := kubevirtclient.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	g := &AgentGuests{bin: bin, dir: dir, kube: kube, kubevirt: kv, guests: map[types.UID]*AgentGuest{}, failed: map[types.UID]error{}}
	go func() {
		wait.UntilWithContext(ctx, g.sync, 200*time.Millisecond)
		g.mu.Lock()
		defer g.mu.Unlock()
		for uid, guest := range g.guests {
			guest.stop()
			delete(g.guests, uid)
		}
	}()
	return g, nil
}

// Guest waits until the VMI of ns/name runs a booted guest, and returns
// it; an error says why its boot failed.
func (g *AgentGuests) Guest(ctx context.Context, ns, name string) (*AgentGuest, error) {
	var out *AgentGuest
	var last error
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(context.Context) (bool, error) {
		g.mu.Lock()
		defer g.mu.Unlock()
		for _, guest := range g.guests {
			if guest.Namespace == ns && guest.Name == name {
				out = guest
				return true, nil
			}
		}
		for _, err := range g.failed {
			if err != nil && strings.Contains(err.Error(), ns+"/"+name+":") {
				last = err
			}
		}
		return false, nil
	})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("no guest booted for the VMI %s/%s", ns, name), last, err)
	}
	return out, nil
}

// Running says whether a guest of ns/name runs.
func (g *AgentGuests) Running(ns, name string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, guest := range g.guests {
		if guest.Namespace == ns && guest.Name == name {
			return true
		}
	}
	return false
}

func (g *AgentGuests) sync(ctx context.Context) {
	vmis, err := g.kubevirt.KubevirtV1().VirtualMachineInstances(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	live := map[types.UID]bool{}
	for i := range vmis.Items {
		vmi := &vmis.Items[i]
		if vmi.Status.Phase != kubevirtv1.Running || vmi.DeletionTimestamp != nil || len(vmi.Status.Interfaces) == 0 || vmi.Status.Interfaces[0].IP == "" {
			continue
		}
		live[vmi.UID] = true
		g.mu.Lock()
		_, booted := g.guests[vmi.UID]
		_, failed := g.failed[vmi.UID]
		g.mu.Unlock()
		if booted || failed {
			continue
		}
		guest, err := g.boot(ctx, vmi)
		g.mu.Lock()
		if err != nil {
			g.failed[vmi.UID] = fmt.Errorf("%s/%s: %w", vmi.Namespace, vmi.Name, err)
		} else if guest != nil {
			g.guests[vmi.UID] = guest
		} else {
			g.failed[vmi.UID] = nil // nothing to install: not looked at again
		}
		g.mu.Unlock()
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for uid, guest := range g.guests {
		if !live[uid] {
			guest.stop()
			delete(g.guests, uid)
		}
	}
	for uid := range g.failed {
		if !live[uid] {
			delete(g.failed, uid)
		}
	}
}

// userData reads the VMI's cloud-init user data as virt-launcher does.
func (g *AgentGuests) userData(ctx context.Context, vmi *kubevirtv1.VirtualMachineInstance) (string, bool, error) {
	for _, v := range vmi.Spec.Volumes {
		src := v.CloudInitNoCloud
		if src == nil {
			continue
		}
		if src.UserDataSecretRef == nil {
			return src.UserData, true, nil
		}
		s, err := g.kube.CoreV1().Secrets(vmi.Namespace).Get(ctx, src.UserDataSecretRef.Name, metav1.GetOptions{})
		if err != nil {
			return "", true, fmt.Errorf("the user data Secret: %w", err)
		}
		for _, k := range []string{"userdata", "userData"} {
			if b, ok := s.Data[k]; ok {
				return string(b), true, nil
			}
		}
		return "", true, fmt.Errorf("no userdata or userData key in the Secret %s", s.Name)
	}
	return "", false, nil
}

type cloudWriteFile struct {
	Path        string `json:"path"`
	Content     string `json:"content"`
	Encoding    string `json:"encoding"`
	Permissions string `json:"permissions"`
}

// boot plays the guest's first boot: nil when its cloud-init does not
// install the agent.
func (g *AgentGuests) boot(ctx context.Context, vmi *kubevirtv1.VirtualMachineInstance) (*AgentGuest, error) {
	ud, ok, err := g.userData(ctx, vmi)
	if err != nil || !ok {
		return nil, err
	}
	if !strings.HasPrefix(ud, "#cloud-config\n") {
		return nil, nil
	}
	var cfg struct {
		WriteFiles []cloudWriteFile `json:"write_files"`
		RunCmd     []any            `json:"runcmd"`
	}
	if err := yaml.Unmarshal([]byte(ud), &cfg); err != nil {
		return nil, fmt.Errorf("the user data is not a cloud-config: %w", err)
	}
	installs := false
	for _, c := range cfg.RunCmd {
		installs = installs || strings.Contains(fmt.Sprint(c), agentInstallScript)
	}
	if !installs {
		return nil, nil
	}
	guest := &AgentGuest{Namespace: vmi.Namespace, Name: vmi.Name, UID: vmi.UID, Roots: map[string]string{},
		Root: filepath.Join(g.dir, vmi.Namespace, vmi.Name+"-"+string(vmi.UID)), exited: make(chan struct{})}
	for _, f := range cfg.WriteFiles {
		if err := guest.write(f); err != nil {
			return nil, err
		}
	}
	unit, err := os.ReadFile(guest.local("/etc/systemd/system/wukong-agent.service"))
	if err != nil {
		return nil, fmt.Errorf("no wukong-agent unit written: %w", err)
	}
	var args []string
	for _, l := range strings.Split(string(unit), "\n") {
		if rest, ok := strings.CutPrefix(l, "ExecStart="); ok {
			args = strings.Fields(rest)[1:]
		}
	}
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "--config" {
			if args[i+1], err = guest.rewriteConfig(args[i+1], vmi.Status.Interfaces[0].IP); err != nil {
				return nil, err
			}
		}
	}
	if err := guest.start(ctx, g.bin, args); err != nil {
		return nil, err
	}
	return guest, nil
}

// local is where the guest's path p lies here.
func (a *AgentGuest) local(p string) string {
	return filepath.Join(a.Root, filepath.FromSlash(filepath.Clean("/"+p)))
}

func (a *AgentGuest) write(f cloudWriteFile) error {
	data := []byte(f.Content)
	switch f.Encoding {
	case "", "text/plain":
	case "b64", "base64":
		var err error
		if data, err = base64.StdEncoding.DecodeString(f.Content); err != nil {
			return fmt.Errorf("write_files %s: %w", f.Path, err)
		}
	default:
		return fmt.Errorf("write_files %s: encoding %q is not played here", f.Path, f.Encoding)
	}
	mode := os.FileMode(0o644) // cloud-init's default
	if f.Permissions != "" {
		m, err := strconv.ParseUint(f.Permissions, 8, 32)
		if err != nil {
			return fmt.Errorf("write_files %s: permissions %q: %w", f.Path, f.Permissions, err)
		}
		mode = os.FileMode(m)
	}
	p := a.local(f.Path)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(p, data, mode); err != nil {
		return err
	}
	return os.Chmod(p, mode)
}

// rewriteConfig writes, beside the guest's agent config at guest path p, a
// copy whose listen address is ip (the port kept) and whose paths lie under
// the guest's directory; it returns the copy's local path.
func (a *AgentGuest) rewriteConfig(p, ip string) (string, error) {
	b, err := os.ReadFile(a.local(p))
	if err != nil {
		return "", fmt.Errorf("the agent's config %s: %w", p, err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		return "", fmt.Errorf("the agent's config %s: %w", p, err)
	}
	listen, _ := cfg["listen"].(string)
	_, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("the agent's config %s: listen %q: %w", p, listen, err)
	}
	a.Addr = net.JoinHostPort(ip, port)
	cfg["listen"] = a.Addr
	for _, k := range []string{"tokenFile", "tlsCertFile", "tlsKeyFile"} {
		if v, ok := cfg[k].(string); ok {
			cfg[k] = a.local(v)
		}
	}
	roots, _ := cfg["roots"].([]any)
	for _, r := range roots {
		m, ok := r.(map[string]any)
		if !ok {
			continue
		}
		gp, _ := m["path"].(string)
		dir := a.local(gp)
		if gp == "/" {
			// The guest's whole filesystem would hold the agent's own
			// files; a directory of its own plays it.
			dir = filepath.Join(a.Root, ".slash")
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", err
		}
		m["local"], a.Roots[gp] = dir, dir
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		return "", err
	}
	local := a.local(p) + ".standin"
	return local, os.WriteFile(local, out, 0o600)
}

// start runs the agent and waits until it listens.
func (a *AgentGuest) start(ctx context.Context, bin string, args []string) error {
	a.log = filepath.Join(a.Root, "wukong-agent.log")
	logf, err := os.Create(a.log)
	if err != nil {
		return err
	}
	defer func() { _ = logf.Close() }()
	a.cmd = exec.Command(bin, args...)
	a.cmd.Stdout, a.cmd.Stderr = logf, logf
	a.cmd.SysProcAttr = childProcAttr()
	if err := a.cmd.Start(); err != nil {
		return err
	}
	go func() { _ = a.cmd.Wait(); close(a.exited) }()
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		select {
		case <-a.exited:
			return false, errors.New("wukong-agent exited")
		default:
		}
		c, err := net.DialTimeout("tcp", a.Addr, time.Second)
		if err != nil {
			return false, nil
		}
		_ = c.Close()
		return true, nil
	})
	if err != nil {
		a.stop()
		b, _ := os.ReadFile(a.log)
		return fmt.Errorf("starting wukong-agent on %s: %w: %s", a.Addr, err, b)
	}
	return nil
}

// stop ends the agent as systemd does at shutdown: SIGTERM, then SIGKILL.
func (a *AgentGuest) stop() {
	if a.cmd == nil || a.cmd.Process == nil {
		return
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.exited:
	case <-time.After(10 * time.Second):
		_ = a.cmd.Process.Kill()
		<-a.exited
	}
}

// Stopped is closed when the guest's agent has exited.
func (a *AgentGuest) Stopped() <-chan struct{} { return a.exited }

// Log is the agent's output so far.
func (a *AgentGuest) Log() string {
	b, _ := os.ReadFile(a.log)
	return string(b)
}
