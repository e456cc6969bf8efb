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

package release

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// This file plays the kubelet and the container runtime for one pod of the
// rendered Deployment, as far as one machine allows (see pod.run).

// extractImage writes the image's filesystem (mutate.Extract: its layers
// flattened) under root. The image holds directories and regular files only;
// anything else fails, so a change to the image is seen here.
func extractImage(img v1.Image, root string) error {
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := path.Clean("/" + h.Name)
		p := filepath.Join(root, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, os.FileMode(h.Mode)&os.ModePerm); err != nil {
				return err
			}
			if err := os.Chmod(p, os.FileMode(h.Mode)&(os.ModePerm|os.ModeSticky)|modeBits(h.Mode)); err != nil {
				return err
			}
		case tar.TypeReg:
			// A layer need not list a file's parents before it.
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, os.FileMode(h.Mode)&os.ModePerm)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		default:
			return fmt.Errorf("the image holds %s of type %q: only directories and regular files expected", h.Name, h.Typeflag)
		}
		if err := os.Lchown(p, h.Uid, h.Gid); err != nil {
			return err
		}
	}
}

// modeBits keeps the sticky bit of a tar mode (an image's /tmp has it).
func modeBits(mode int64) os.FileMode {
	if mode&01000 != 0 {
		return os.ModeSticky
	}
	return 0
}

// pod is one replica of the rendered Deployment, about to run on this machine.
type pod struct {
	namespace, name string
	spec            *corev1.PodSpec
	container       *corev1.Container
	image           *v1.ConfigFile
	// root is the image's extracted filesystem; dir holds the volumes.
	root, dir string
	// hosts maps names to addresses in the /etc/hosts the pod gets: the
	// cluster DNS's answers for the Services it dials.
	hosts map[string]string
	// ip is the pod's address (this host's).
	ip string
	// apiServer is host:port of kube-apiserver, as KUBERNETES_SERVICE_*.
	apiServer string
}

// command is what the runtime execs: the container's command, else the
// image's entrypoint; then the container's args, else (with no command)
// the image's cmd. $(VAR) references expand from env, as the kubelet does.
func (p *pod) command(env map[string]string) []string {
	c := p.container
	var argv []string
	switch {
	case len(c.Command) > 0:
		argv = append(argv, c.Command...)
		argv = append(argv, c.Args...)
	case len(c.Args) > 0:
		argv = append(append(argv, p.image.Config.Entrypoint...), c.Args...)
	default:
		argv = append(append(argv, p.image.Config.Entrypoint...), p.image.Config.Cmd...)
	}
	for i, a := range argv {
		argv[i] = expandRefs(a, env)
	}
	return argv
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

func expandRefs(s string, env map[string]string) string {
	return varRef.ReplaceAllStringFunc(s, func(m string) string {
		if v, ok := env[m[2:len(m)-1]]; ok {
			return v
		}
		return m
	})
}

// env is the container's environment: the image's, the kubelet's service
// variables for kubernetes.default (pointing at the test's kube-apiserver),
// HOSTNAME, and the container's env with the downward API resolved.
func (p *pod) env(t *testing.T) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, kv := range p.image.Config.Env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	host, port, err := net.SplitHostPort(p.apiServer)
	if err != nil {
		t.Fatal(err)
	}
	env["KUBERNETES_SERVICE_HOST"], env["KUBERNETES_SERVICE_PORT"] = host, port
	env["KUBERNETES_SERVICE_PORT_HTTPS"] = port
	env["HOSTNAME"] = p.name
	for _, e := range p.container.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = expandRefs(e.Value, env)
		case e.ValueFrom.FieldRef != nil:
			switch e.ValueFrom.FieldRef.FieldPath {
			case "metadata.namespace":
				env[e.Name] = p.namespace
			case "metadata.name":
				env[e.Name] = p.name
			default:
				t.Fatalf("env %s: the rehearsal does not know field %s", e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
		case e.ValueFrom.ResourceFieldRef != nil:
			env[e.Name] = p.resourceField(t, e.Name, e.ValueFrom.ResourceFieldRef)
		default:
			t.Fatalf("env %s: the rehearsal knows only values, fieldRefs and resourceFieldRefs", e.Name)
		}
	}
	return env
}

// resourceField is the kubelet's value of a resourceFieldRef to this
// container's limits: the quantity divided by the divisor (default 1),
// rounded up. A limit the container does not set would be the node's
// allocatable there; the rehearsal has no node, so it fails instead.
func (p *pod) resourceField(t *testing.T, name string, ref *corev1.ResourceFieldSelector) string {
	t.Helper()
	if ref.ContainerName != "" && ref.ContainerName != p.container.Name {
		t.Fatalf("env %s: resourceFieldRef to container %q, the rehearsal runs %q", name, ref.ContainerName, p.container.Name)
	}
	res, ok := strings.CutPrefix(ref.Resource, "limits.")
	if !ok {
		t.Fatalf("env %s: the rehearsal knows only limits.*, not %s", name, ref.Resource)
	}
	q, ok := p.container.Resources.Limits[corev1.ResourceName(res)]
	if !ok {
		t.Fatalf("env %s: the container sets no %s", name, ref.Resource)
	}
	divisor := int64(1)
	if !ref.Divisor.IsZero() {
		divisor = ref.Divisor.Value()
	}
	return strconv.FormatInt((q.Value()+divisor-1)/divisor, 10)
}

// mount is a bind mount into the pod's root.
type mount struct {
	source, target string
	readOnly       bool
}

// volumes materialises the pod's volumes as the kubelet does: each Secret
// and ConfigMap key a file (from the objects in the cluster), an emptyDir
// an empty writable directory, and the service-account token volume (the
// admission plugin's projected volume, automounted unless the pod or its
// ServiceAccount says not to) with a token from TokenRequest, the cluster
// CA and the namespace. It returns the mounts, in the container's order.
func (p *pod) volumes(t *testing.T, ctx context.Context, kube kubernetes.Interface, clusterCA []byte) []mount {
	t.Helper()
	byName := map[string]string{}
	for _, v := range p.spec.Volumes {
		dir := filepath.Join(p.dir, "volumes", v.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		files := map[string][]byte{}
		mode := os.FileMode(0o644)
		switch {
		case v.Secret != nil:
			s, err := kube.CoreV1().Secrets(p.namespace).Get(ctx, v.Secret.SecretName, metav1.GetOptions{})
			if err != nil {
				t.Fatalf("volume %s: %v", v.Name, err)
			}
			files = s.Data
			if v.Secret.DefaultMode != nil {
				mode = os.FileMode(*v.Secret.DefaultMode)
			}
			if len(v.Secret.Items) > 0 {
				t.Fatalf("volume %s: the rehearsal does not map items", v.Name)
			}
		case v.ConfigMap != nil:
			cm, err := kube.CoreV1().ConfigMaps(p.namespace).Get(ctx, v.ConfigMap.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatalf("volume %s: %v", v.Name, err)
			}
			for k, s := range cm.Data {
				files[k] = []byte(s)
			}
			if v.ConfigMap.DefaultMode != nil {
				mode = os.FileMode(*v.ConfigMap.DefaultMode)
			}
			if len(v.ConfigMap.Items) > 0 {
				t.Fatalf("volume %s: the rehearsal does not map items", v.Name)
			}
		case v.EmptyDir != nil:
			if err := os.Chmod(dir, 0o777); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("volume %s: the rehearsal knows Secret, ConfigMap and emptyDir volumes only", v.Name)
		}
		for k, b := range files {
			if err := os.WriteFile(filepath.Join(dir, k), b, mode); err != nil {
				t.Fatal(err)
			}
		}
		byName[v.Name] = dir
	}

	var mounts []mount
	for _, m := range p.container.VolumeMounts {
		src, ok := byName[m.Name]
		if !ok {
			t.Fatalf("volumeMount %s names no volume", m.Name)
		}
		if m.SubPath != "" {
			t.Fatalf("volumeMount %s: the rehearsal does not do subPath", m.Name)
		}
		mounts = append(mounts, mount{source: src, target: m.MountPath, readOnly: m.ReadOnly})
	}

	sa, err := kube.CoreV1().ServiceAccounts(p.namespace).Get(ctx, p.spec.ServiceAccountName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the pod's ServiceAccount: %v", err)
	}
	automount := true
	if sa.AutomountServiceAccountToken != nil {
		automount = *sa.AutomountServiceAccountToken
	}
	if p.spec.AutomountServiceAccountToken != nil {
		automount = *p.spec.AutomountServiceAccountToken
	}
	if automount {
		tr, err := kube.CoreV1().ServiceAccounts(p.namespace).CreateToken(ctx, sa.Name, &authenticationv1.TokenRequest{
			Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("TokenRequest for %s/%s: %v", p.namespace, sa.Name, err)
		}
		dir := filepath.Join(p.dir, "volumes", "kube-api-access")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, b := range map[string][]byte{"token": []byte(tr.Status.Token), "ca.crt": clusterCA, "namespace": []byte(p.namespace)} {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		mounts = append(mounts, mount{source: dir, target: "/var/run/secrets/kubernetes.io/serviceaccount", readOnly: true})
	}
	return mounts
}

// run starts the container; its output goes to logPath. The channel closes
// when the process has exited.
//
// How the root is remapped: the image's filesystem, extracted under p.root,
// becomes the process's root with chroot(2), inside a mount namespace of its
// own (unshare --mount, propagation private, so nothing leaks to the host
// and everything goes when the process ends). In that namespace, as runc
// does: p.root is bind-mounted onto itself; each volume is bind-mounted at
// its mountPath (read-only when the Deployment says so); /etc/hosts is a
// file the kubelet would write; /proc is a new procfs; /dev a tmpfs with
// null, zero, full, random and urandom. Then p.root is remounted read-only
// (readOnlyRootFilesystem), and chroot --userspec drops to the user the
// Deployment names (65532:65532), which leaves no capabilities. The mount
// points are created in the extracted copy first, as a runtime creates them.
// The network is the host's: the server listens where the Deployment says
// (0.0.0.0:8443), and the aggregator reaches it at this host's address.
func (p *pod) run(t *testing.T, env map[string]string, mounts []mount, logPath string) (*exec.Cmd, <-chan struct{}) {
	t.Helper()
	sc := p.spec.SecurityContext
	if sc == nil || sc.RunAsUser == nil {
		t.Fatal("the pod names no runAsUser")
	}
	uid, gid := *sc.RunAsUser, *sc.RunAsUser
	if sc.RunAsGroup != nil {
		gid = *sc.RunAsGroup
	}
	if c := p.container.SecurityContext; c == nil || c.ReadOnlyRootFilesystem == nil || !*c.ReadOnlyRootFilesystem {
		t.Fatal("the container's root filesystem is not read-only")
	}

	// As the kubelet writes it (localhost, the pod's own name), plus the
	// Service names the cluster DNS would answer.
	hosts := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n" + p.ip + "\t" + p.name + "\n"
	for name, addr := range p.hosts {
		hosts += addr + "\t" + name + "\n"
	}
	hostsFile := filepath.Join(p.dir, "etc-hosts")
	if err := os.WriteFile(hostsFile, []byte(hosts), 0o644); err != nil {
		t.Fatal(err)
	}

	// The host's tools, by absolute path: PATH is the container's from here.
	tools := map[string]string{}
	for _, tool := range []string{"mount", "chroot"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Fatal(err)
		}
		tools[tool] = p
	}
	q := strconv.Quote
	var sh strings.Builder
	sh.WriteString("set -eu\n")
	fmt.Fprintf(&sh, "mount() { %s \"$@\"; }\n", q(tools["mount"]))
	fmt.Fprintf(&sh, "R=%s\n", q(p.root))
	sh.WriteString(`mount --bind "$R" "$R"` + "\n")
	mountPoint := func(target string, file bool) {
		full := filepath.Join(p.root, target)
		var err error
		if file {
			if err = os.MkdirAll(filepath.Dir(full), 0o755); err == nil {
				err = os.WriteFile(full, nil, 0o644)
			}
		} else {
			err = os.MkdirAll(full, 0o755)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range mounts {
		mountPoint(m.target, false)
		fmt.Fprintf(&sh, "mount --bind %s \"$R\"%s\n", q(m.source), q(m.target))
		if m.readOnly {
			fmt.Fprintf(&sh, "mount -o remount,bind,ro \"$R\"%s\n", q(m.target))
		}
	}
	mountPoint("/etc/hosts", true)
	fmt.Fprintf(&sh, "mount --bind %s \"$R/etc/hosts\"\nmount -o remount,bind,ro \"$R/etc/hosts\"\n", q(hostsFile))
	mountPoint("/proc", false)
	sh.WriteString(`mount -t proc -o nosuid,nodev,noexec proc "$R/proc"` + "\n")
	mountPoint("/dev", false)
	sh.WriteString(`mount -t tmpfs -o nosuid,mode=755 tmpfs "$R/dev"` + "\n")
	sh.WriteString(`for d in null zero full random urandom; do : > "$R/dev/$d"; mount --bind "/dev/$d" "$R/dev/$d"; done` + "\n")
	sh.WriteString(`mount -o remount,bind,ro "$R"` + "\n")
	fmt.Fprintf(&sh, "exec %s --userspec=%d:%d --groups=%d \"$R\" \"$@\"\n", q(tools["chroot"]), uid, gid, gid)

	argv := p.command(env)
	cmd := exec.Command("unshare", append([]string{"--mount", "--propagation", "private", "--", "/bin/sh", "-c", sh.String(), "sh"}, argv...)...)
	cmd.Env = nil
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	log, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("started %q as %d:%d in %s (log %s)", argv, uid, gid, p.root, logPath)
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		log.Close()
	})
	return cmd, exited
}

// hostAddress is this machine's first IPv4 address outside loopback: what a
// pod IP is to the aggregator here (EndpointSlices refuse loopback addresses).
func hostAddress() (string, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return "", err
	}
	for _, iface := range ifaces {
		if iface.Flags&net.FlagUp == 0 || iface.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := iface.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsGlobalUnicast() {
				return n.IP.String(), nil
			}
		}
	}
	return "", fmt.Errorf("no IPv4 address outside loopback on this machine")
}
